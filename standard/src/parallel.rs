//! Evaluating many devices on all cores.
//!
//! Evaluation of one device is pure and independent of every other, so a
//! fleet is cut into chunks that worker threads take one after another (a
//! busy or descheduled core then holds up one chunk, not a fixed half of
//! the fleet). Plain `std::thread::scope`: no thread pool lives on between
//! runs, and callers keep borrowing their data.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The number of worker threads: the cores this process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` on consecutive chunks of at most `chunk` items, on up to
/// `threads` threads, and returns the results in the order of the chunks.
/// With one thread (or one chunk) it runs on the caller's thread.
pub fn map_chunks<T, R, F>(items: &[T], chunk: usize, threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> R + Sync,
{
    let chunk = chunk.max(1);
    let count = items.len().div_ceil(chunk);
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return items.chunks(chunk).map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let end = (i * chunk + chunk).min(items.len());
                    let r = f(&items[i * chunk..end]);
                    done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_threads() {
        let items: Vec<u64> = (0..10_007).collect();
        let want: Vec<u64> = items.chunks(100).map(|c| c.iter().sum()).collect();
        for threads in [1, 2, 3, 8] {
            let got = map_chunks(&items, 100, threads, |c| c.iter().sum::<u64>());
            assert_eq!(got, want, "{threads} threads");
        }
        assert!(map_chunks(&items[..0], 100, 4, |c: &[u64]| c.len()).is_empty());
    }

    #[test]
    fn uses_more_than_one_thread() {
        let items: Vec<u32> = (0..64).collect();
        let ids = map_chunks(&items, 1, 4, |_| {
            // Long enough that one worker cannot take every chunk alone.
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::thread::current().id()
        });
        let mut distinct = ids.clone();
        distinct.sort_by_key(|id| format!("{id:?}"));
        distinct.dedup();
        assert!(distinct.len() > 1, "all chunks ran on {distinct:?}");
    }
}
