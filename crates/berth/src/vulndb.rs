//! `berth vulndb import`: loads OSV advisories into the data dir's vulnerability database,
//! which image scans (ECR's scan on push and `StartImageScan`) match packages against.
//! It may run while the server runs: the database is replaced atomically, and the server
//! reads the new one at its next scan.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use crate::cli::VulndbImportArgs;

/// Where the database lives inside a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("vulndb")
}

pub fn import(args: VulndbImportArgs) -> anyhow::Result<()> {
    // The same check as every other command: the data dir must be one `berth up` made.
    args.data.open()?;
    let target = dir(&args.data.data_dir);
    let mode = if args.replace { scanner::db::ImportMode::Replace } else { scanner::db::ImportMode::Merge };
    eprintln!("Reading OSV records from {} ...", args.path.display());
    let report = scanner::db::import(&target, &args.path, mode, SystemTime::now())
        .with_context(|| format!("importing {} (nothing was changed)", args.path.display()))?;
    println!(
        "imported {} of {} records ({} replaced an older copy); the database in {} now holds {} records",
        report.imported,
        report.read,
        report.replaced,
        target.display(),
        report.total
    );
    for (reason, n) in &report.skipped {
        println!("skipped {n} records: {reason}");
    }
    if report.imported == 0 {
        eprintln!(
            "warning: no record was imported; Berth matches Debian, Ubuntu and Alpine advisories (OSV ecosystems Debian:*, Ubuntu:*, Alpine:*)"
        );
    }
    Ok(())
}
