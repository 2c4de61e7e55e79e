use super::*;

fn sizes(spec: &str, total: usize) -> Vec<usize> {
    spec.parse::<BatchSpec>().unwrap().sizes(total)
}

#[test]
fn counts_percentages_and_serial_lists() {
    assert_eq!(sizes("2", 5), [2, 2, 1]);
    assert_eq!(sizes("25%", 10), [2, 2, 2, 2, 2]);
    assert_eq!(sizes("30%", 10), [3, 3, 3, 1]);
    assert_eq!(
        sizes("10%", 5),
        [1, 1, 1, 1, 1],
        "a percentage rounds down but takes at least one host"
    );
    assert_eq!(
        sizes("1,2,50%", 10),
        [1, 2, 5, 2],
        "the last item repeats, as in Ansible's serial"
    );
    assert_eq!(sizes("100%", 3), [3]);
    assert_eq!(sizes("5", 0), Vec::<usize>::new());
    assert_eq!(BatchSpec::default().sizes(2), [1, 1]);
}

#[test]
fn split_keeps_order() {
    let spec: BatchSpec = "1,2".parse().unwrap();
    assert_eq!(
        spec.split(&["a", "b", "c", "d", "e"]),
        vec![vec!["a"], vec!["b", "c"], vec!["d", "e"]]
    );
    assert_eq!(spec.to_string(), "1,2");
}

#[test]
fn bad_batches_are_refused() {
    for bad in ["0", "0%", "101%", "", "1,,2", "a", "-1", "1.5"] {
        let e = bad.parse::<BatchSpec>().unwrap_err();
        assert!(e.to_string().contains("examples"), "{bad}: {e}");
    }
}
