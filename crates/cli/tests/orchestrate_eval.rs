//! `plexus orchestrate eval` end to end: the binary runs every experiment through the gateway
//! pipeline against the in-process simulator, and its checks hold (the vote reaches its closed
//! form within the sampling error, the confidence's ECE over 10 bins is at most 0.05, raw for
//! independent members and recalibrated for correlated ones, the gain shrinks with
//! correlation, the cascade's frontier, quorum under faults).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::process::Command;

#[test]
fn the_evaluation_passes_its_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args([
            "orchestrate",
            "eval",
            "--questions",
            "1200",
            "--seed",
            "7",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    // The numbers behind the checks.
    let vote = report["vote"]["accuracy"].as_f64().unwrap();
    assert!(
        (vote - 0.847).abs() < 3.0 * (0.847 * 0.153 / 1200.0f64).sqrt(),
        "{vote}"
    );
    assert!(report["vote_ece"].as_f64().unwrap() <= 0.05);
    assert!(report["calibration_isotonic_ece"].as_f64().unwrap() <= 0.05);
    assert!(
        report["calibration_raw_ece"].as_f64().unwrap()
            > report["calibration_isotonic_ece"].as_f64().unwrap()
    );
    let single = report["single_member"]["accuracy"].as_f64().unwrap();
    assert!((single - 0.7).abs() < 0.05, "{single}");
    let corr = report["correlation"].as_array().unwrap();
    assert_eq!(corr.len(), 5);
    assert!(corr[4]["gain"].as_f64().unwrap().abs() < 0.03);
    assert!(report["inner_calls"].as_u64().unwrap() > 10_000);
}

#[test]
fn calibrate_fits_a_map_from_labelled_answers() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    // Answers reported at 0.9 are right 70% of the time; at 0.3, 30%.
    let mut lines = String::new();
    for i in 0..400 {
        let (c, right) = if i % 2 == 0 {
            (0.9, i % 20 < 14)
        } else {
            (0.3, i % 20 < 6)
        };
        lines.push_str(&format!(
            "{{\"raw_confidence\": {c}, \"correct\": {right}}}\n"
        ));
    }
    std::fs::write(&pairs, lines).unwrap();
    let out = dir.path().join("map.json");
    let run = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["orchestrate", "calibrate", "--pairs"])
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("400 labelled answers"), "{stdout}");
    let map: plexus_orchestrate::Calibrator =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!((map.apply(0.9) - 0.7).abs() < 0.05, "{}", map.apply(0.9));

    std::fs::write(&pairs, "{\"confidence\": 2}\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(["orchestrate", "calibrate", "--pairs"])
        .arg(&pairs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("line 1"));
}
