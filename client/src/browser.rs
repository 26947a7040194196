//! Opening a checkout page in the user's browser, for the CLI and the TUI.

/// Opens `url` with `$BROWSER` or the platform's opener.
///
/// # Errors
///
/// When no opener starts: each one's failure, in one line.
pub fn open(url: &str) -> Result<(), String> {
    let mut candidates: Vec<(String, Vec<String>)> = Vec::new();
    if let Ok(browser) = std::env::var("BROWSER")
        && !browser.trim().is_empty()
    {
        candidates.push((browser, Vec::new()));
    }
    if cfg!(target_os = "macos") {
        candidates.push(("open".into(), Vec::new()));
    } else if cfg!(windows) {
        candidates.push((
            "cmd".into(),
            vec!["/C".into(), "start".into(), String::new()],
        ));
    } else {
        candidates.push(("xdg-open".into(), Vec::new()));
    }
    let mut problems = Vec::new();
    for (program, args) in candidates {
        let spawned = std::process::Command::new(&program)
            .args(&args)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(_) => return Ok(()),
            Err(error) => problems.push(format!("{program}: {error}")),
        }
    }
    Err(problems.join("; "))
}
