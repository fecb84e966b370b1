//! The few libm functions the kernels need, from the `libm` crate (no_std has none of its own).

#[inline(always)]
pub(crate) fn libm_sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}
#[inline(always)]
pub(crate) fn libm_exp(x: f32) -> f32 {
    libm::expf(x)
}
#[inline(always)]
pub(crate) fn libm_sin(x: f32) -> f32 {
    libm::sinf(x)
}
#[inline(always)]
pub(crate) fn libm_cos(x: f32) -> f32 {
    libm::cosf(x)
}
#[inline(always)]
pub(crate) fn libm_round(x: f32) -> f32 {
    libm::roundf(x)
}
