//! The Kubernetes executor (DESIGN §6): workers as Pods of Jobs in one or many clusters. It is
//! told how many workers each (stage, cluster) should have and makes it so: a new Job of the
//! missing count to scale up; to scale down, waiting Jobs deleted and `parallelism` lowered, so
//! Pending workers go first and running ones finish their shard. Watches keep a view of each
//! cluster (its Pods, the run's Jobs, its nodes) from which it reports workers running and
//! Pending, each cluster's free room, and workers that died holding a lease. A cluster that does
//! not answer is reported by name and given no workers.

mod api;
pub mod builds;
mod leases;
pub mod manifest;
#[cfg(test)]
mod manifest_tests;
pub mod survey;
mod view;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

pub use api::ClusterError;
pub use leases::Leases;
use manifest::{MANAGED_BY, RUN_LABEL, WorkerJob, stage_label};
use view::{ClusterView, Shed, shed};
use watch::Watched;

use super::{Executor, ExecutorError, Observation, StageFailure, StageRef};
use crate::clusters::{ClusterConfig, ClustersFile};
use crate::dag::Resources;
use crate::placement::Cluster;
use concurrent_mlflow::project::snapshot::Snapshot;

/// What a stage's workers run: the image of its code and what they ask of a node.
#[derive(Debug, Clone)]
pub struct StageLaunch {
    pub image: LaunchImage,
    pub resources: Resources,
}

/// Where a stage's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchImage {
    /// The stage's `image`, or its MLproject's `docker_env` image.
    Given(String),
    /// Built from the project (its `python_env`) when the stage starts, unless the registry
    /// has it already.
    Built { project_dir: std::path::PathBuf, env: concurrent_mlflow::project::ProjectEnv },
}

/// How a run's workers are made.
pub struct KubernetesConfig {
    pub run_id: String,
    pub clusters: ClustersFile,
    /// Per stage name.
    pub stages: BTreeMap<String, StageLaunch>,
    /// NATS as Pods reach it, unless a cluster says otherwise.
    pub nats_url: String,
    /// Workers exit after this long without a shard.
    pub idle_timeout: Duration,
    /// The workers' leases; without them dead workers' shards come back after `ack_wait`.
    pub leases: Option<Leases>,
}

/// One cluster of the executor.
struct ClusterSlot {
    config: ClusterConfig,
    client: Option<kube::Client>,
    pace: Arc<api::Pace>,
    watched: Arc<Watched>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Jobs made so far here, for unique names.
    made: u64,
    /// Why the cluster could not be used at the last observation, if it could not.
    lost: Option<String>,
}

/// Why a cluster is not usable before its watches first answer.
const NOT_ANSWERED: &str = "not answered yet";

/// Runs a run's workers as Pods of Jobs in the clusters of a clusters file.
pub struct KubernetesExecutor {
    run_id: String,
    slots: Vec<ClusterSlot>,
    stages: BTreeMap<String, StageLaunch>,
    /// Images being had for stages with [`LaunchImage::Built`], by stage.
    builds: BTreeMap<String, builds::SharedBuild>,
    /// Stages whose failed build was reported.
    reported: BTreeSet<String>,
    /// The tasks looking up or waiting for those images; the run's end stops them (a build
    /// Job itself is left to its TTL: another run may wait for the same image).
    build_tasks: Vec<tokio::task::JoinHandle<()>>,
    nats_url: String,
    idle_timeout: Duration,
}

impl KubernetesExecutor {
    /// Makes a client per cluster and starts watching them. Never fails: a cluster that cannot
    /// be reached is reported by [`KubernetesExecutor::unreachable`] and gets no workers.
    pub async fn connect(config: KubernetesConfig) -> KubernetesExecutor {
        let mut slots = Vec::new();
        for cluster in config.clusters.clusters {
            let watched = Arc::new(Watched {
                view: Mutex::new(ClusterView { unreachable: Some(NOT_ANSWERED.into()), ..Default::default() }),
                abandoned: Mutex::new(Vec::new()),
            });
            let (client, tasks) = match api::connect(&cluster).await {
                Ok(client) => {
                    let tasks = watch::spawn(
                        client.clone(),
                        &cluster.namespace,
                        &config.run_id,
                        watched.clone(),
                        config.leases.clone(),
                    );
                    (Some(client), tasks)
                }
                Err(error) => {
                    watched.view.lock().expect("view").unreachable = Some(error.to_string());
                    (None, Vec::new())
                }
            };
            slots.push(ClusterSlot {
                config: cluster,
                client,
                pace: Arc::default(),
                watched,
                tasks,
                made: 0,
                lost: Some(NOT_ANSWERED.into()),
            });
        }
        KubernetesExecutor {
            run_id: config.run_id,
            slots,
            stages: config.stages,
            builds: BTreeMap::new(),
            reported: BTreeSet::new(),
            build_tasks: Vec::new(),
            nats_url: config.nats_url,
            idle_timeout: config.idle_timeout,
        }
    }

    /// The image `stage`'s workers run, once there is one.
    fn image_of(&self, stage: &str) -> Option<String> {
        match &self.stages.get(stage)?.image {
            LaunchImage::Given(image) => Some(image.clone()),
            LaunchImage::Built { .. } => match &*self.builds.get(stage)?.lock().unwrap_or_else(|p| p.into_inner()) {
                builds::BuildState::Ready(image) => Some(image.clone()),
                _ => None,
            },
        }
    }

    /// Clusters that cannot be used now, with why.
    pub fn unreachable(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let view = slot.watched.view.lock().expect("view");
                view.unreachable.clone().map(|why| (slot.config.name.clone(), why))
            })
            .collect()
    }

    /// Waits until every cluster has answered or `deadline` passes.
    pub async fn settle(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        while Instant::now() < until
            && self
                .slots
                .iter()
                .any(|s| s.client.is_some() && s.watched.view.lock().expect("view").unreachable.is_some())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deletes the Jobs (and with them the Pods) that the scheduler made for any of `runs`
    /// (runs that ended while their scheduler was down, say), in every cluster that answers.
    /// Jobs of runs not named are left alone: another scheduler may own them. Returns
    /// `cluster/job` of each one deleted.
    pub async fn remove_runs(&self, runs: &BTreeSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        if runs.is_empty() {
            return removed;
        }
        for slot in &self.slots {
            let Some(client) = &slot.client else { continue };
            let jobs: Api<Job> = Api::namespaced(client.clone(), &slot.config.namespace);
            let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
            let list = ListParams::default().labels(&selector);
            let delete = DeleteParams::background();
            let Ok(listed) = api::call(&slot.pace, || jobs.list(&list)).await else { continue };
            for job in listed.items {
                let run = job.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL)).cloned().unwrap_or_default();
                let name = job.metadata.name.clone().unwrap_or_default();
                if runs.contains(&run) && api::call(&slot.pace, || jobs.delete(&name, &delete)).await.is_ok() {
                    removed.push(format!("{}/{name}", slot.config.name));
                }
            }
        }
        removed
    }

    fn slot_index(&self, cluster: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.config.name == cluster)
    }

    fn mark_unreachable(&self, index: usize, error: &ClusterError) {
        let slot = &self.slots[index];
        tracing::warn!(cluster = %slot.config.name, %error, "the cluster refused a request; it gets no workers until it answers");
        slot.watched.view.lock().expect("view").unreachable = Some(error.to_string());
    }
}

/// Deletes a run's Jobs (and with them their Pods) in every cluster that answers; kept by the
/// caller to clean up after the run ends, the executor having gone with the driver.
pub struct RunCleanup {
    run_id: String,
    clusters: Vec<(String, String, kube::Client, Arc<api::Pace>)>,
}

impl RunCleanup {
    /// Deletes what the run made; `grace` is the Pods' termination grace period.
    pub async fn run(&self, grace: Duration) {
        let selector = format!("{}={},{RUN_LABEL}={}", MANAGED_BY.0, MANAGED_BY.1, self.run_id);
        for (name, namespace, client, pace) in &self.clusters {
            let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
            let params =
                DeleteParams { grace_period_seconds: Some(grace.as_secs() as u32), ..DeleteParams::background() };
            let list = ListParams::default().labels(&selector);
            if let Err(error) = api::call(pace, || jobs.delete_collection(&params, &list)).await {
                tracing::warn!(cluster = %name, %error, "cannot delete the run's Jobs");
            }
        }
    }
}

impl KubernetesExecutor {
    /// What deletes this run's Jobs later.
    pub fn cleanup(&self) -> RunCleanup {
        RunCleanup {
            run_id: self.run_id.clone(),
            clusters: self
                .slots
                .iter()
                .filter_map(|s| {
                    Some((s.config.name.clone(), s.config.namespace.clone(), s.client.clone()?, s.pace.clone()))
                })
                .collect(),
        }
    }
}

impl Executor for KubernetesExecutor {
    fn clusters(&mut self) -> Vec<Cluster> {
        self.slots
            .iter()
            .map(|slot| {
                slot.watched.view.lock().expect("view").room(&slot.config.name, slot.config.max_workers, &self.run_id)
            })
            .collect()
    }

    async fn set_desired(&mut self, stage: &StageRef, cluster: &str, workers: u32) -> Result<(), ExecutorError> {
        let Some(index) = self.slot_index(cluster) else { return Ok(()) };
        let label = stage_label(&stage.run_id, &stage.stage);
        let (now, jobs) = {
            let view = self.slots[index].watched.view.lock().expect("view");
            (view.stage_workers(&stage.run_id, &label).total(), view.jobs_of(&stage.run_id, &label))
        };
        let Some(client) = self.slots[index].client.clone() else { return Ok(()) };
        let slot = &self.slots[index];
        let jobs_api: Api<Job> = Api::namespaced(client, &slot.config.namespace);
        if workers > now {
            let Some(launch) = self.stages.get(&stage.stage) else { return Ok(()) };
            // A stage whose image is still being had gets its workers once it is there.
            let Some(image) = self.image_of(&stage.stage) else { return Ok(()) };
            let job = WorkerJob {
                run_id: &stage.run_id,
                stage: &stage.stage,
                cluster: &slot.config,
                image: &image,
                env_in_image: matches!(launch.image, LaunchImage::Built { .. }),
                resources: &launch.resources,
                workers: workers - now,
                sequence: slot.made,
                default_nats_url: &self.nats_url,
                idle_timeout: self.idle_timeout,
            };
            let manifest = job.manifest().map_err(ExecutorError::Manifest)?;
            let name = job.name();
            let pace = slot.pace.clone();
            let params = PostParams::default();
            let created = api::call(&pace, || jobs_api.create(&params, &manifest)).await;
            self.slots[index].made += 1;
            match created {
                Ok(_) => {
                    // Count its Pods as owed at once, before the watch sees the Job.
                    let mut view = self.slots[index].watched.view.lock().expect("view");
                    view.jobs.entry(name).or_insert(view::JobSeen {
                        run: stage.run_id.clone(),
                        stage_label: label,
                        parallelism: workers - now,
                        succeeded: 0,
                        finished: false,
                        created: Instant::now(),
                    });
                }
                Err(error) => self.mark_unreachable(index, &error),
            }
        } else if workers < now {
            let delete = DeleteParams::background();
            let patch_params = PatchParams::default();
            for action in shed(&jobs, now - workers) {
                let pace = slot.pace.clone();
                let result = match &action {
                    Shed::Delete(name) => api::call(&pace, || jobs_api.delete(name, &delete)).await.map(|_| ()),
                    Shed::Parallelism(name, parallelism) => {
                        let patch = Patch::Merge(serde_json::json!({"spec": {"parallelism": parallelism}}));
                        api::call(&pace, || jobs_api.patch(name, &patch_params, &patch)).await.map(|_| ())
                    }
                };
                match result {
                    Ok(()) => {
                        let mut view = self.slots[index].watched.view.lock().expect("view");
                        match &action {
                            Shed::Delete(name) => {
                                view.jobs.remove(name);
                            }
                            Shed::Parallelism(name, parallelism) => {
                                if let Some(job) = view.jobs.get_mut(name) {
                                    job.parallelism = *parallelism;
                                }
                            }
                        }
                    }
                    Err(error) if error.is_not_found() => {}
                    Err(error) => {
                        self.mark_unreachable(index, &error);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn prepare_stage(&mut self, stage: &StageRef, project: &Snapshot) -> Result<(), ExecutorError> {
        let Some(LaunchImage::Built { project_dir, env }) = self.stages.get(&stage.stage).map(|l| &l.image) else {
            return Ok(());
        };
        if self.builds.contains_key(&stage.stage) {
            return Ok(());
        }
        let state: builds::SharedBuild = Arc::new(Mutex::new(builds::BuildState::Pending));
        self.builds.insert(stage.stage.clone(), state.clone());
        // The first cluster that answers and says where to push builds.
        let site = self.slots.iter().find_map(|slot| {
            let images = slot.config.images.clone()?;
            let client = slot.client.clone()?;
            Some(builds::BuildSite {
                client,
                pace: slot.pace.clone(),
                namespace: slot.config.namespace.clone(),
                images,
            })
        });
        let Some(site) = site else {
            let reason = "no cluster that says where to push built images (`images.registry`) can be reached".into();
            *state.lock().unwrap_or_else(|p| p.into_inner()) = builds::BuildState::Failed { reason, log: None };
            return Ok(());
        };
        let python_env = crate::images::load_python_env(project_dir, env)?;
        let settings = crate::images::ImageSettings {
            registry: site.images.registry.clone(),
            repository: site.images.repository.clone(),
            base_image: site.images.base_image.clone(),
            ..crate::images::ImageSettings::default()
        };
        let plan = crate::images::plan_build(&project.hash, python_env.as_ref(), &settings);
        tracing::info!(stage = %stage.stage, image = %plan.image, "the stage's image is looked up, and built if absent");
        self.build_tasks.push(tokio::spawn(builds::ensure(site, plan, project.bytes.clone(), state)));
        Ok(())
    }

    fn observe(&mut self, now: Duration) -> Observation {
        let at = Instant::now();
        let mut observation = Observation::default();
        for (stage, state) in &self.builds {
            if let builds::BuildState::Failed { reason, log } = &*state.lock().unwrap_or_else(|p| p.into_inner())
                && self.reported.insert(stage.clone())
            {
                observation.failed_stages.push(StageFailure {
                    stage: StageRef { run_id: self.run_id.clone(), stage: stage.clone() },
                    reason: reason.clone(),
                    log: log.clone(),
                });
            }
        }
        for slot in &mut self.slots {
            let view = slot.watched.view.lock().expect("view");
            match (&view.unreachable, &slot.lost) {
                (Some(why), None) if slot.client.is_some() => {
                    tracing::warn!(cluster = %slot.config.name, %why, "cluster cannot be reached: its workers are not counted and its share goes to the others");
                }
                (None, Some(was)) if was != NOT_ANSWERED => {
                    tracing::warn!(cluster = %slot.config.name, "cluster can be reached again")
                }
                _ => {}
            }
            slot.lost = view.unreachable.clone();
            observation.abandoned.append(&mut slot.watched.abandoned.lock().expect("abandoned"));
            // What is last seen of a cluster that does not answer may be long gone: its workers
            // are not counted, so that the others make up for them (a stage may then have more
            // workers than it wants while the cluster's own still live; they take shards from
            // the same queue).
            if view.unreachable.is_some() {
                continue;
            }
            for stage in self.stages.keys() {
                let workers = view.stage_workers(&self.run_id, &stage_label(&self.run_id, stage));
                if workers.total() > 0 {
                    let key = StageRef { run_id: self.run_id.clone(), stage: stage.clone() };
                    observation.placed.entry(key).or_default().push(workers.placed(&slot.config.name, now, at));
                }
            }
        }
        observation
    }

    /// The smallest `burst_after` of the clusters (placement takes one for all).
    fn burst_after(&self) -> Duration {
        self.slots.iter().map(|s| s.config.burst_after).min().unwrap_or(crate::placement::DEFAULT_BURST_AFTER)
    }

    async fn shutdown(&mut self, grace: Duration) {
        self.cleanup().run(grace).await;
        for slot in &mut self.slots {
            for task in slot.tasks.drain(..) {
                task.abort();
            }
        }
        for task in self.build_tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for KubernetesExecutor {
    fn drop(&mut self) {
        for task in self.slots.iter().flat_map(|slot| &slot.tasks).chain(&self.build_tasks) {
            task.abort();
        }
    }
}
