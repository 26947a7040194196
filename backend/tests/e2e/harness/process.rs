//! The `shop-backend` processes of a test's shop: starting them, their
//! logs and metrics, stopping, killing and restarting them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::infrastructure::Broker;
use super::{Backend, Shop, WAIT};

pub use shop_backend::Service;

/// The order a distributed shop's processes start in.
pub const START_ORDER: [Service; 4] = [
    Service::Gateway,
    Service::Stock,
    Service::Order,
    Service::Payment,
];

/// One `shop-backend` process, restartable on the same port.
pub(super) struct Process {
    pub(super) name: String,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(String, String)>,
    pub(super) port: u16,
    pub(super) log: PathBuf,
    pub(super) child: Option<Child>,
}

impl Process {
    pub(super) async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop-backend"));
        command
            .args(&self.args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("SHOP_LOG", "info,shop_backend=debug,sqlx=warn")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        command.stderr(log);
        let mut child = command.spawn().expect("shop-backend starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} printed no address in time; log:\n{}",
                    self.name,
                    self.log_text()
                )
            })
            .expect("stdout readable")
            .unwrap_or_else(|| {
                panic!(
                    "{} exited before listening; log:\n{}",
                    self.name,
                    self.log_text()
                )
            });
        let address = first
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.port = address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port");
        self.child = Some(child);
    }

    pub(super) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not stop on SIGTERM; log:\n{}",
                    self.name,
                    self.log_text()
                )
            })
            .expect("wait");
        assert!(
            exit.success(),
            "{} exited with {exit} on SIGTERM; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("killed");
    }

    /// Waits until `/healthz` answers 200.
    pub(super) async fn wait_healthy(&self, http: &reqwest::Client) {
        let url = format!("{}/healthz", self.base());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never became healthy; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Shop {
    fn processes(&mut self) -> Vec<&mut Process> {
        match &mut self.backend {
            Backend::Embedded(process) => vec![process],
            Backend::Distributed { services, .. } => {
                services.iter_mut().map(|(_, process)| process).collect()
            }
        }
    }

    /// The first instance of `service` (distributed mode).
    fn service(&mut self, service: Service) -> &mut Process {
        match &mut self.backend {
            Backend::Distributed { services, .. } => services
                .iter_mut()
                .find(|(which, _)| *which == service)
                .map(|(_, process)| process)
                .expect("service exists"),
            Backend::Embedded(_) => {
                panic!("services are separate processes only in distributed mode")
            }
        }
    }

    /// Everything the backend processes logged so far.
    pub fn log(&self) -> String {
        let mut logs = String::new();
        let processes: Vec<&Process> = match &self.backend {
            Backend::Embedded(process) => vec![process],
            Backend::Distributed { services, .. } => {
                services.iter().map(|(_, process)| process).collect()
            }
        };
        for process in processes {
            logs.push_str(&format!(
                "==== {} ====\n{}",
                process.name,
                process.log_text()
            ));
        }
        if let Backend::Distributed {
            broker: Broker::Own(broker),
            ..
        } = &self.backend
        {
            logs.push_str(&format!("==== kafka ====\n{}", broker.log()));
        }
        logs
    }

    /// The base URLs of every backend process, for `/healthz` and `/metrics`.
    pub fn process_urls(&self) -> Vec<String> {
        match &self.backend {
            Backend::Embedded(process) => vec![process.base()],
            Backend::Distributed { services, .. } => services
                .iter()
                .filter(|(_, process)| process.child.is_some())
                .map(|(_, process)| process.base())
                .collect(),
        }
    }

    /// The sum of metric `name` over every backend process, counting the
    /// series whose labels include each of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric_per_process(name, labels).await.iter().sum()
    }

    /// Metric `name` of each backend process (summed over the series whose
    /// labels include each of `labels`), in process order.
    pub async fn metric_per_process(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut values = Vec::new();
        for base in self.process_urls() {
            let text = self
                .http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics answer")
                .text()
                .await
                .expect("metrics text");
            let mut total = 0.0;
            for line in text.lines().filter(|line| !line.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                if metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
                {
                    total += value.parse::<f64>().unwrap_or(0.0);
                }
            }
            values.push(total);
        }
        values
    }

    /// The services of the processes [`Shop::process_urls`] names, in order.
    pub fn process_services(&self) -> Vec<Service> {
        match &self.backend {
            Backend::Embedded(_) => Vec::new(),
            Backend::Distributed { services, .. } => services
                .iter()
                .filter(|(_, process)| process.child.is_some())
                .map(|(service, _)| *service)
                .collect(),
        }
    }

    /// Whether every backend process answers `/healthz` with 200.
    pub async fn all_healthy(&self) -> bool {
        for base in self.process_urls() {
            match self.http.get(format!("{base}/healthz")).send().await {
                Ok(response) if response.status() == 200 => {}
                _ => return false,
            }
        }
        true
    }

    /// Stops every backend process with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) {
        for process in self.processes() {
            process.terminate().await;
        }
    }

    /// Kills every backend process with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        for process in self.processes() {
            process.kill().await;
        }
    }

    /// Starts every backend process again on the same ports and data.
    pub async fn restart(&mut self) {
        let http = self.http.clone();
        for process in self.processes() {
            assert!(process.child.is_none(), "stop or kill first");
            process.spawn().await;
        }
        for process in self.processes() {
            process.wait_healthy(&http).await;
        }
    }

    /// The WebSocket URL of each running instance of the gateway
    /// (distributed mode), in the order they started.
    pub fn gateway_ws_urls(&self) -> Vec<String> {
        match &self.backend {
            Backend::Distributed { services, .. } => services
                .iter()
                .filter(|(service, process)| {
                    *service == Service::Gateway && process.child.is_some()
                })
                .map(|(_, process)| shop_client::websocket_url(&process.base()))
                .collect(),
            Backend::Embedded(process) => vec![shop_client::websocket_url(&process.base())],
        }
    }

    /// Kills one service with SIGKILL (distributed mode).
    pub async fn kill_service(&mut self, service: Service) {
        self.service(service).kill().await;
    }

    /// Starts a killed service again on its port (distributed mode).
    pub async fn restart_service(&mut self, service: Service) {
        let http = self.http.clone();
        let process = self.service(service);
        process.spawn().await;
        process.wait_healthy(&http).await;
    }

    /// Starts one more instance of `service` (distributed mode).
    pub async fn add_instance(&mut self, service: Service) {
        let http = self.http.clone();
        let Backend::Distributed { services, .. } = &mut self.backend else {
            panic!("instances exist only in distributed mode");
        };
        let (_, first) = services
            .iter()
            .find(|(which, _)| *which == service)
            .expect("service exists");
        let count = services
            .iter()
            .filter(|(which, _)| *which == service)
            .count();
        let mut process = Process {
            name: format!("{}-{}", service.name(), count + 1),
            args: first.args.clone(),
            env: first.env.clone(),
            port: 0,
            log: self
                .dir
                .path()
                .join(format!("{}-{}.log", service.name(), count + 1)),
            child: None,
        };
        process.spawn().await;
        process.wait_healthy(&http).await;
        services.push((service, process));
    }
}
