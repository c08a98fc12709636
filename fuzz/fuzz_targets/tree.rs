//! Tree blobs (directory listings): the postcard decoder and the validation every reader
//! applies (safe, sorted, unique names; nanoseconds; subtrees; content only on files).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_core::tree::Tree;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = Tree::from_bytes(data, "fuzz input") else {
        return;
    };
    // What was accepted reads back the same after a rewrite (repair, copy), and every name
    // is found by the lookup restore and `ls` use.
    let again = Tree::from_bytes(&tree.to_bytes(), "re-encoded").expect("re-encoded tree");
    assert_eq!(again, tree);
    for node in &tree.nodes {
        assert!(tree.find(&node.name).is_some());
    }
});
