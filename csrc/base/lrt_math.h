/* lrt_math.h -- loomrt's own elementary functions (math.c). No libm transcendental function
 * is used anywhere in the numerics: libms disagree across platforms. These are built from
 * + - * /, sqrt and bit manipulation only, so they give the same bits on every IEEE-754
 * machine that evaluates in its own precision without FMA contraction (docs/numerics.md). */
#ifndef LOOMRT_MATH_H
#define LOOMRT_MATH_H

#include <stdint.h>

/* float, used per element in the forward pass */
float lrt_expf(float x);   /* e^x, |error| <= 2 ulp over the finite range            */
float lrt_tanhf(float x);  /* tanh via lrt_expf; absolute error <= 2^-23             */
float lrt_siluf(float x);  /* x / (1 + e^-x)                                          */
float lrt_gelu_tanhf(float x); /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))     */

/* double, used only to build tables (RoPE frequencies and angles) */
double lrt_exp(double x);
double lrt_log(double x);  /* x > 0 */
double lrt_pow(double x, double y); /* x > 0 */
void lrt_sincos(double x, double *s, double *c);

#endif
