//! The inputs of the binary metrics: slices, arrays, vectors and `ndarray` 1-D arrays and
//! views, all read as one contiguous `&[T]`.
//!
//! A contiguous array or view (standard layout) is borrowed as it is; a strided view (every
//! other element, a column of a row-major matrix, a reversed view) is copied once into a
//! `Vec`. Every metric is defined once, on slices.

use std::borrow::Cow;

use ndarray::{ArrayBase, Data, Ix1};

/// A 1-D sequence of values that the metrics read as a contiguous slice.
///
/// Implemented for `[T]`, `[T; N]`, `Vec<T>`, `ndarray`'s `Array1<T>` and `ArrayView1<T>`
/// (any `ArrayBase<S, Ix1>`), and references to any of them, so that `&y`, `&scores`,
/// `&array` and `&array.view()` can all be passed.
///
/// ```
/// use ndarray::{array, s};
/// use miram_metrics::roc_auc;
///
/// let y = [0u8, 0, 1, 1];
/// let scores = array![0.1, 0.4, 0.35, 0.8];
/// assert_eq!(roc_auc(&y, &scores.view())?, 0.75);
/// // A strided view: every other value of a longer array, copied once.
/// let every_other = array![0.1, 9.0, 0.4, 9.0, 0.35, 9.0, 0.8, 9.0];
/// assert_eq!(roc_auc(&y, &every_other.slice(s![..;2]))?, 0.75);
/// # Ok::<(), miram_metrics::MetricsError>(())
/// ```
pub trait Values<T: Clone> {
    /// The values in order, borrowed when contiguous, copied otherwise.
    fn values(&self) -> Cow<'_, [T]>;
}

impl<T: Clone> Values<T> for [T] {
    fn values(&self) -> Cow<'_, [T]> {
        Cow::Borrowed(self)
    }
}

impl<T: Clone, const N: usize> Values<T> for [T; N] {
    fn values(&self) -> Cow<'_, [T]> {
        Cow::Borrowed(self)
    }
}

impl<T: Clone> Values<T> for Vec<T> {
    fn values(&self) -> Cow<'_, [T]> {
        Cow::Borrowed(self)
    }
}

impl<T: Clone, S: Data<Elem = T>> Values<T> for ArrayBase<S, Ix1> {
    fn values(&self) -> Cow<'_, [T]> {
        match self.as_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(self.to_vec()),
        }
    }
}

impl<T: Clone, V: Values<T> + ?Sized> Values<T> for &V {
    fn values(&self) -> Cow<'_, [T]> {
        (**self).values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, s};

    #[test]
    fn contiguous_inputs_are_borrowed_strided_ones_copied() {
        let a = array![1.0, 2.0, 3.0, 4.0];
        assert!(matches!(a.values(), Cow::Borrowed(_)));
        assert!(matches!(a.view().values(), Cow::Borrowed(_)));
        let strided = a.slice(s![..;2]);
        match strided.values() {
            Cow::Owned(v) => assert_eq!(v, [1.0, 3.0]),
            Cow::Borrowed(b) => panic!("a strided view was borrowed: {b:?}"),
        }
        let reversed = a.slice(s![..;-1]);
        assert_eq!(*reversed.values(), [4.0, 3.0, 2.0, 1.0]);
        let v = vec![5u8, 6];
        assert_eq!(*(&&v).values(), [5, 6]);
    }
}
