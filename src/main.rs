//! The `cx-operator` binary: `run`, `crd`, `check-config`, `plan`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cx_operator::{
    api::{self, Tenant},
    config::{Config, ConfigError},
    operator::{self, Operator},
    plan,
    provider::setup,
    server,
    telemetry::{self, LogFormat},
    webhook,
};

/// Kubernetes operator for the tenant control plane of the customer-experience platform.
#[derive(Parser)]
#[command(name = "cx-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers, leader election, the admission webhook, health and metrics endpoints.
    Run {
        /// Operator configuration file.
        #[arg(long, env = "CX_OPERATOR_CONFIG", default_value = "/etc/cx-operator/config.yaml")]
        config: PathBuf,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, env = "CX_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Log format.
        #[arg(long, env = "CX_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Identity in leader election; defaults to the pod name (POD_NAME), then the host name.
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD).
    Crd {
        /// Write `<crd name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Validate a configuration file and report every problem with its path.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print, offline, everything a Tenant would become.
    Plan {
        /// The Tenant manifest (YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Operator configuration; defaults to a built-in example (rootDomain cx.example.com).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "yaml")]
        output: Output,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Yaml,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir.as_deref()),
        Command::CheckConfig { file } => return check_config(&file),
        Command::Plan { file, config, output } => print_plan(&file, config.as_deref(), output),
        Command::Run { config, metrics_addr, log_format, identity } => run(&config, metrics_addr, log_format, identity),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(out_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(dir) = out_dir else {
        print!("{}", api::crds_yaml()?);
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    for crd in api::crds() {
        let path = dir.join(format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default()));
        std::fs::write(&path, api::crd_yaml(&crd)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: valid", file.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            eprintln!("{}: {} problem(s)", file.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_plan(file: &std::path::Path, config: Option<&std::path::Path>, output: Output) -> anyhow::Result<()> {
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::example(),
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let tenant: Tenant = serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not a valid Tenant", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let providers = runtime.block_on(setup::for_plan(&config))?;
    let plan = plan::plan(&tenant, &config, &providers, jiff::Timestamp::now())?;
    match output {
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&plan)?),
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(())
}

fn run(config_path: &std::path::Path, metrics_addr: SocketAddr, log_format: LogFormat, identity: Option<String>) -> anyhow::Result<()> {
    telemetry::init_logging(log_format);
    let config = Arc::new(Config::load(config_path)?);
    let identity = identity.unwrap_or_else(default_identity);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let providers = setup::from_config(&client, &config).await.context("setting up the backends")?;
        tracing::info!(?providers, "backends configured");
        // Every replica serves the webhook, leader or not.
        let webhook = match config.webhook.enabled {
            true => Some(webhook::Webhook::start(client.clone(), config.clone()).await.context("starting the admission webhook")?),
            false => None,
        };
        let shutdown_timeout = config.reconcile.shutdown_timeout;
        let operator = Operator::start(client, config, providers, identity.clone());
        tracing::info!(identity, "cx-operator started");
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(true);
        let router = server::router(operator.metrics.clone(), ready_rx, operator.health.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(server::serve(metrics_addr, router, async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|s| *s).await;
        }));
        tokio::select! {
            _ = operator::shutdown_signal() => {
                tracing::info!(?shutdown_timeout, "shutdown requested; finishing in-flight reconciles, then releasing the lease");
                let _ = ready_tx.send(false);
                stop_operator(operator, shutdown_timeout).await?;
            }
            result = operator_finished(&operator) => result?,
        }
        let _ = stop_tx.send(true);
        if let Some(webhook) = webhook {
            webhook.stop().await?;
        }
        server.await??;
        anyhow::Ok(())
    })
}

/// Stops the operator: reconciles get `shutdown_timeout` to finish, then the Lease is
/// released. A second signal, or the release hanging (an unreachable API server) for
/// 5 s more, ends the wait: the process must exit inside the pod's grace period.
async fn stop_operator(operator: Operator, shutdown_timeout: std::time::Duration) -> anyhow::Result<()> {
    let limit = shutdown_timeout + std::time::Duration::from_secs(5);
    tokio::select! {
        result = tokio::time::timeout(limit, operator.stop()) => match result {
            Ok(stopped) => stopped?,
            Err(_) => tracing::warn!(?limit, "the operator did not stop in time; exiting without releasing the lease"),
        },
        _ = operator::shutdown_signal() => tracing::warn!("second shutdown signal; exiting now"),
    }
    Ok(())
}

async fn operator_finished(operator: &Operator) -> anyhow::Result<()> {
    while !operator.is_finished() {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    anyhow::bail!("the operator stopped unexpectedly")
}

fn default_identity() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("cx-operator-{}", std::process::id()))
}
