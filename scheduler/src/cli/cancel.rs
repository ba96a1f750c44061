//! `concurrent cancel RUN_ID`: asks the scheduler driving a run to cancel it (through NATS);
//! a run whose scheduler is gone is marked cancelled in the state dir.

use std::time::Duration;

use concurrent_proto::names;

use super::run::absolute;
use super::services::recorded_nats_url;
use super::{CancelArgs, EXIT_INVALID, EXIT_OK, EXIT_SERVICE};
use crate::run_id::is_valid_run_id;
use crate::run_tree::now_ms;
use crate::store::{RunStatus, Store, StoreError};

/// How long the running scheduler has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Cancels a run; returns the exit code.
pub async fn cancel(args: CancelArgs) -> u8 {
    if !is_valid_run_id(&args.run_id) {
        eprintln!("error: RUN_ID: `{}` is not a run id", args.run_id);
        return EXIT_INVALID;
    }
    let state_dir = absolute(&args.state_dir);
    let nats_url = std::env::var("NATS_URL").ok().filter(|u| !u.is_empty()).or_else(|| recorded_nats_url(&state_dir));
    if let Some(url) = nats_url
        && let Ok(client) = async_nats::connect(&url).await
    {
        let request = client.request(names::control_subject(&args.run_id), "cancel".into());
        match tokio::time::timeout(ANSWER_WITHIN, request).await {
            Ok(Ok(_)) => {
                println!("run {} cancelled", args.run_id);
                return EXIT_OK;
            }
            Ok(Err(error)) => tracing::debug!(%error, "no scheduler answered"),
            Err(_) => {
                eprintln!("error: the scheduler of run {} did not answer within {ANSWER_WITHIN:?}", args.run_id);
                return EXIT_SERVICE;
            }
        }
    }
    // Nobody drives the run: mark it cancelled in the state dir.
    let store = match Store::open(&state_dir.join("state")) {
        Ok(store) => store,
        Err(StoreError::Busy { .. }) => {
            eprintln!(
                "error: a scheduler holds the state dir {} but no scheduler of run {} answered through NATS \
                 (set NATS_URL to its server)",
                state_dir.display(),
                args.run_id
            );
            return EXIT_SERVICE;
        }
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_SERVICE;
        }
    };
    match store.run(&args.run_id) {
        Ok(Some(mut record)) if record.status == RunStatus::Running => {
            record.status = RunStatus::Cancelled;
            record.ended_ms = Some(now_ms());
            if store.put_run(&record).is_err() || store.flush().await.is_err() {
                eprintln!("error: cannot record the cancellation in {}", state_dir.display());
                return EXIT_SERVICE;
            }
            println!("run {} cancelled (no scheduler was running it)", args.run_id);
            EXIT_OK
        }
        Ok(Some(record)) => {
            eprintln!("error: RUN_ID: run {} has already ended ({:?})", args.run_id, record.status);
            EXIT_INVALID
        }
        Ok(None) => {
            eprintln!("error: RUN_ID: no run {} in {}", args.run_id, state_dir.display());
            EXIT_INVALID
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_SERVICE
        }
    }
}
