//! Verify keeps counts, not differences: a comparison of many differing
//! nodes holds no memory per difference (each goes to the sink as it is
//! found). No server is needed: the comparer is fed walked entries directly,
//! and this test binary counts what its own thread has allocated and not
//! freed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use zkrepl::internals::{Comparer, Entry};
use zkrepl::node::{NodeInfo, Slot};
use zkrepl::verify::{DiffClass, DiffSink, Difference, FirstDifferences};
use zookeeper_client as zk;

/// Counts the bytes each thread holds (allocated and not yet freed by it).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn stat() -> zk::Stat {
    zk::Stat {
        czxid: 1,
        mzxid: 1,
        pzxid: 1,
        ctime: 0,
        mtime: 0,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 16,
        num_children: 0,
    }
}

/// A node the source has and the destination lacks.
fn missing(i: u64) -> Entry {
    let node = NodeInfo { stat: stat(), data: vec![b'x'; 16], acl: Vec::new() };
    Entry { rel: format!("/app/{i:08}"), src: Slot::Node(Box::new(node)), dst: Slot::Absent }
}

#[test]
fn many_differences_hold_no_memory_in_the_comparer() {
    let mut seen = 0u64;
    let mut last = String::new();
    let mut sink = |d: Difference| {
        assert_eq!(d.class, DiffClass::MissingOnDst);
        seen += 1;
        last = d.path;
    };
    let mut cmp = Comparer::new(false, false, &mut sink);
    // Warm up, so that buffers reused from here on are already allocated.
    for i in 0..1000 {
        cmp.entry(&missing(i));
    }
    let before = live();
    for i in 1000..201_000 {
        cmp.entry(&missing(i));
    }
    let grown = live() - before;
    assert_eq!(cmp.counts().missing_on_dst, 201_000);
    assert!(grown < 4096, "the comparer kept {grown} bytes over 200,000 differences");
    assert_eq!(seen, 201_000, "every difference reached the sink");
    assert_eq!(last, "/app/00200999");
}

#[test]
fn a_bounded_listing_keeps_only_its_first_differences() {
    let mut first = FirstDifferences::new(5);
    for i in 0..10_000 {
        first.difference(Difference { class: DiffClass::ExtraOnDst, path: format!("/{i}"), detail: String::new() });
    }
    assert_eq!(first.listed.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(), ["/0", "/1", "/2", "/3", "/4"]);
    assert_eq!(first.unlisted, 9_995);
}
