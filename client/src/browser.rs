//! Opening a checkout page in the user's browser, for the CLI and the TUI.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::client::names_this_machine;

/// How long an opener has to fail before it counts as started. `xdg-open`
/// and `open` hand the URL over and exit at once; a browser named by
/// `$BROWSER` may run until it is closed, and is left running.
const FAILS_WITHIN: Duration = Duration::from_secs(3);

/// Whether `url` names this machine only (`localhost`, `127.0.0.0/8`,
/// `::1`, `0.0.0.0`): another device, such as a phone scanning its QR
/// code, cannot open it.
pub fn reachable_only_here(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(names_this_machine))
        .unwrap_or(false)
}

/// Opens `url` with `$BROWSER` or the platform's opener (`xdg-open`,
/// `open`, `start`), trying the next when one fails.
///
/// Every opener started is waited for, so none is left a zombie: one that
/// exits within three seconds is reaped then (success only with status 0),
/// one still running after that (a browser itself) is reaped by the
/// runtime when it exits.
///
/// # Errors
///
/// When no opener exists or every one failed: each one's failure, in one
/// line. The caller shows the URL to copy.
pub async fn open(url: &str) -> Result<(), String> {
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
    open_with(url, &candidates, FAILS_WITHIN).await
}

/// Opens `url` with the first of `candidates` (program and arguments before
/// the URL) that starts and does not fail within `fails_within`.
async fn open_with(
    url: &str,
    candidates: &[(String, Vec<String>)],
    fails_within: Duration,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (program, args) in candidates {
        let spawned = Command::new(program)
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{program} not found"));
                continue;
            }
            Err(error) => {
                problems.push(format!("{program}: {error}"));
                continue;
            }
        };
        match tokio::time::timeout(fails_within, child.wait()).await {
            Ok(Ok(status)) if status.success() => return Ok(()),
            Ok(Ok(status)) => problems.push(format!("{program} failed ({status})")),
            Ok(Err(error)) => problems.push(format!("{program}: {error}")),
            // Still running: a browser itself. Dropped, tokio reaps it.
            Err(_) => return Ok(()),
        }
    }
    Err(problems.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, args: &[&str]) -> (String, Vec<String>) {
        (
            name.to_owned(),
            args.iter().map(|arg| (*arg).to_owned()).collect(),
        )
    }

    #[tokio::test]
    async fn an_opener_that_fails_or_is_missing_is_reported_and_the_next_is_tried() {
        let url = "http://127.0.0.1:8080/checkout/x";
        let failed = open_with(
            url,
            &[program("false", &[]), program("/nonexistent/opener", &[])],
            FAILS_WITHIN,
        )
        .await
        .expect_err("nothing opened");
        assert!(
            failed.starts_with("false failed (exit status: 1)"),
            "{failed}"
        );
        assert!(
            failed.ends_with("/nonexistent/opener not found"),
            "{failed}"
        );
        assert_eq!(
            open_with(
                url,
                &[program("false", &[]), program("true", &[])],
                FAILS_WITHIN
            )
            .await,
            Ok(())
        );
    }

    #[test]
    fn loopback_links_are_known_to_be_for_this_machine_only() {
        assert!(reachable_only_here("http://127.0.0.1:8080/checkout/x"));
        assert!(reachable_only_here("https://localhost/checkout/x"));
        assert!(reachable_only_here("http://[::1]:8080/checkout/x"));
        assert!(!reachable_only_here("http://192.168.1.20:8080/checkout/x"));
        assert!(!reachable_only_here("https://shop.example/checkout/x"));
    }

    #[tokio::test]
    async fn a_browser_that_keeps_running_counts_as_opened() {
        let started = open_with(
            "http://127.0.0.1:8080/checkout/x",
            &[program("sh", &["-c", "sleep 5", "browser"])],
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(started, Ok(()));
    }
}
