//! A heap buffer that is zeroed when dropped: it holds checkpoint
//! plaintext, which is process memory, and should not linger in freed heap.

use std::ops::{Deref, DerefMut};

use zeroize::Zeroize;

pub struct Wiped(Vec<u8>);

impl Wiped {
    pub fn new(len: usize) -> Wiped {
        Wiped(vec![0u8; len])
    }
}

impl Deref for Wiped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Wiped {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
