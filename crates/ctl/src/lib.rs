//! `warrenctl`: a command line for the management HTTP API, in the spirit of `rabbitmqctl`
//! and `rabbitmqadmin` — listings as aligned tables (or `--json`), purge, delete, DLQ peek /
//! move / stats, definitions export and import, status, and rabbitmqctl's user, vhost and
//! permission commands under rabbitmqctl's names (`add_user`, `set_permissions -p VHOST …`;
//! the hyphenated spellings work too), and rabbitmq-queues' quorum queue member commands
//! (`grow NODE all|even`, `shrink NODE`, `add_member QUEUE NODE`, `delete_member QUEUE NODE`).
//! The `warrenctl` binary calls [`main`]; tests call [`run_from`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

pub mod client;

use client::encode_segment;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "warrenctl",
    version,
    about = "Warren's management command line (talks to the HTTP API)"
)]
pub struct Args {
    /// Management API base URL
    #[arg(long, env = "WARRENCTL_URL", default_value = "http://127.0.0.1:15672")]
    pub url: String,
    /// User
    #[arg(long, env = "WARRENCTL_USER", default_value = "guest")]
    pub user: String,
    /// Password
    #[arg(long, env = "WARRENCTL_PASSWORD", default_value = "guest")]
    pub password: String,
    /// Virtual host (rabbitmqctl's `-p`)
    #[arg(long, short = 'p', global = true, default_value = "/")]
    pub vhost: String,
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Objects `list` can show.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Listing {
    /// Queues with depth, consumers, rates, DLQ flag.
    Queues,
    /// Exchanges.
    Exchanges,
    /// Bindings.
    Bindings,
    /// Client connections.
    Connections,
    /// Consumers.
    Consumers,
}

/// Which quorum queues `grow` adds a member to (rabbitmq-queues grow's selector).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GrowStrategy {
    /// Every quorum queue the node is not a member of.
    All,
    /// Only those with an even number of members.
    Even,
}

/// Objects `delete` can remove.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List objects
    List {
        /// queues, exchanges, bindings, connections or consumers
        what: Listing,
    },
    /// Remove every ready message of a queue
    Purge {
        /// Queue name
        queue: String,
    },
    /// Delete a queue or an exchange
    Delete {
        /// queue or exchange
        what: Kind,
        /// Name
        name: String,
    },
    /// Dead-letter queue tools
    Dlq {
        /// peek, move or stats
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// Export definitions (to FILE, or standard output)
    ExportDefinitions {
        /// Output file
        file: Option<PathBuf>,
    },
    /// Import a definitions file (RabbitMQ's format); lists what was skipped or applied without effect
    ImportDefinitions {
        /// Input file
        file: PathBuf,
    },
    /// Broker overview: versions, listeners, totals, rates, alerts
    Status,
    /// Cluster members, which are running, and the leader (a node without clustering lists itself)
    #[command(name = "cluster_status", alias = "cluster-status")]
    ClusterStatus,
    /// Make the node this command talks to join the cluster of the node at HOST:PORT (its cluster address); the joining node must hold no replicated data of its own
    #[command(name = "join_cluster", alias = "join-cluster")]
    JoinCluster {
        /// Cluster address (--cluster-listen) of any member of the cluster to join
        address: String,
    },
    /// Remove a node from the cluster, by name
    #[command(name = "forget_cluster_node", alias = "forget-cluster-node")]
    ForgetClusterNode {
        /// Node name (warren@host)
        name: String,
    },
    /// Add NODE as a member (replica) of every quorum queue of the selection (rabbitmq-queues grow): all of them, or those with an even number of members
    Grow {
        /// Node name (warren@host)
        node: String,
        /// all or even
        strategy: GrowStrategy,
        /// Only vhosts whose names match this regex
        #[arg(long, default_value = ".*")]
        vhost_pattern: String,
        /// Only queues whose names match this regex
        #[arg(long, default_value = ".*")]
        queue_pattern: String,
    },
    /// Remove NODE from every quorum queue it is a member of, unless it is the last one (rabbitmq-queues shrink)
    Shrink {
        /// Node name (warren@host)
        node: String,
    },
    /// Add NODE as a member (replica) of quorum queue QUEUE of the vhost (-p) (rabbitmq-queues add_member)
    #[command(name = "add_member", alias = "add-member")]
    AddMember {
        /// Quorum queue name
        queue: String,
        /// Node name (warren@host)
        node: String,
    },
    /// Remove NODE from the members of quorum queue QUEUE of the vhost (-p) (rabbitmq-queues delete_member)
    #[command(name = "delete_member", alias = "delete-member")]
    DeleteMember {
        /// Quorum queue name
        queue: String,
        /// Node name (warren@host)
        node: String,
    },
    /// Queue directories set aside in <data-dir>/quarantine (no definition named them)
    Quarantine {
        /// list or reattach
        #[command(subcommand)]
        cmd: QuarantineCmd,
    },
    /// Create a user (rabbitmqctl add_user)
    #[command(name = "add_user", alias = "add-user")]
    AddUser {
        /// User name
        name: String,
        /// Password
        password: String,
    },
    /// Delete a user and its permissions
    #[command(name = "delete_user", alias = "delete-user")]
    DeleteUser {
        /// User name
        name: String,
    },
    /// Change a user's password
    #[command(name = "change_password", alias = "change-password")]
    ChangePassword {
        /// User name
        name: String,
        /// New password
        password: String,
    },
    /// Replace a user's tags (none: clear them)
    #[command(name = "set_user_tags", alias = "set-user-tags")]
    SetUserTags {
        /// User name
        name: String,
        /// Tags (administrator, monitoring, management, policymaker, …)
        tags: Vec<String>,
    },
    /// List users and their tags
    #[command(name = "list_users", alias = "list-users")]
    ListUsers,
    /// Create a virtual host
    #[command(name = "add_vhost", alias = "add-vhost")]
    AddVhost {
        /// Vhost name
        name: String,
    },
    /// Delete a virtual host with everything in it
    #[command(name = "delete_vhost", alias = "delete-vhost")]
    DeleteVhost {
        /// Vhost name
        name: String,
    },
    /// List virtual hosts
    #[command(name = "list_vhosts", alias = "list-vhosts")]
    ListVhosts,
    /// Set a user's configure/write/read regexes on the vhost (-p)
    #[command(name = "set_permissions", alias = "set-permissions")]
    SetPermissions {
        /// User name
        user: String,
        /// Configure regex
        configure: String,
        /// Write regex
        write: String,
        /// Read regex
        read: String,
    },
    /// Clear a user's permissions on the vhost (-p)
    #[command(name = "clear_permissions", alias = "clear-permissions")]
    ClearPermissions {
        /// User name
        user: String,
    },
    /// List the permissions on the vhost (-p)
    #[command(name = "list_permissions", alias = "list-permissions")]
    ListPermissions,
    /// List a user's permissions on every vhost
    #[command(name = "list_user_permissions", alias = "list-user-permissions")]
    ListUserPermissions {
        /// User name
        user: String,
    },
    /// Set a user's topic permission on an exchange of the vhost (-p)
    #[command(name = "set_topic_permissions", alias = "set-topic-permissions")]
    SetTopicPermissions {
        /// User name
        user: String,
        /// Topic exchange
        exchange: String,
        /// Write regex (routing keys published)
        write: String,
        /// Read regex (binding keys bound)
        read: String,
    },
    /// Clear a user's topic permissions on the vhost (-p), all or one exchange's
    #[command(name = "clear_topic_permissions", alias = "clear-topic-permissions")]
    ClearTopicPermissions {
        /// User name
        user: String,
        /// Only this exchange's
        exchange: Option<String>,
    },
    /// List the topic permissions on the vhost (-p)
    #[command(name = "list_topic_permissions", alias = "list-topic-permissions")]
    ListTopicPermissions,
    /// List a user's topic permissions on every vhost
    #[command(name = "list_user_topic_permissions", alias = "list-user-topic-permissions")]
    ListUserTopicPermissions {
        /// User name
        user: String,
    },
}

/// `quarantine` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// List quarantined queue directories: queue, vhost, messages, bytes
    List,
    /// Declare a quarantined directory's queue again (from the definition it keeps) and
    /// recover its messages
    Reattach {
        /// Directory name (as `quarantine list` shows it)
        dir: String,
    },
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Show messages (left in the queue) with their x-death history
    Peek {
        /// DLQ name
        queue: String,
        /// How many
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
    /// Move messages back to the queue they died in (or to --exchange/--routing-key)
    Move {
        /// DLQ name
        queue: String,
        /// Most messages to move (default: all)
        #[arg(long)]
        count: Option<usize>,
        /// Only show what would move
        #[arg(long)]
        dry_run: bool,
        /// Target exchange instead of x-first-death-queue
        #[arg(long)]
        exchange: Option<String>,
        /// Target routing key (with --exchange; default: the message's own)
        #[arg(long)]
        routing_key: Option<String>,
    },
    /// Messages in a DLQ grouped by death reason and original queue
    Stats {
        /// DLQ name
        queue: String,
    },
}

struct Api<'a> {
    a: &'a Args,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        match self.call_status(method, path, body).await? {
            (status, v) if status >= 400 => {
                let reason = v["reason"].as_str().map(str::to_string).unwrap_or_else(|| s(&v));
                Err(format!("{method} {path}: HTTP {status}: {reason}"))
            }
            (_, v) => Ok(v),
        }
    }

    /// Like [`Api::call`], but an HTTP error status is returned rather than turned into `Err`.
    async fn call_status(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{}", self.a.url.trim_end_matches('/'), path);
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let r = client::request(method, &url, Some((&self.a.user, &self.a.password)), body)
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let v = if r.body.is_empty() {
            Value::Null
        } else if r.status >= 400 {
            serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()))
        } else {
            r.json()
        };
        Ok((r.status, v))
    }

    /// A user's JSON, or rabbitmqctl's `no_such_user` error.
    async fn user(&self, name: &str) -> Result<Value, String> {
        match self
            .call_status("GET", &format!("/api/users/{}", encode_segment(name)), None)
            .await?
        {
            (200, v) => Ok(v),
            (404, _) => Err(format!("no_such_user: {name}")),
            (status, v) => Err(format!("GET user {name}: HTTP {status}: {}", s(&v["reason"]))),
        }
    }

    fn vh(&self) -> String {
        encode_segment(&self.a.vhost)
    }
}

/// Formats rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC (Howard Hinnant's
/// civil-from-days; the listings need nothing more than this from a date library).
fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// What `import-definitions` prints for the API's answer: a table of the skipped and ignored
/// items (or, with `--json`, the report; empty lists when everything was applied).
fn import_report(file: &str, report: &Value, json: bool) -> String {
    let items = |k: &str| report[k].as_array().cloned().unwrap_or_default();
    let (skipped, ignored) = (items("skipped"), items("ignored"));
    if json {
        return pretty(&serde_json::json!({"skipped": skipped, "ignored": ignored}));
    }
    let mut out = format!("imported definitions from {file}");
    if skipped.is_empty() && ignored.is_empty() {
        return out + "\n";
    }
    out.push_str(&format!(
        ": {} skipped, {} ignored\n",
        skipped.len(),
        ignored.len()
    ));
    let rows: Vec<Vec<String>> = [("skipped", &skipped), ("ignored", &ignored)]
        .into_iter()
        .flat_map(|(what, list)| {
            list.iter().map(move |i| {
                vec![
                    what.to_string(),
                    s(&i["kind"]),
                    s(&i["vhost"]),
                    s(&i["name"]),
                    s(&i["reason"]),
                ]
            })
        })
        .collect();
    out + &table(&["result", "kind", "vhost", "name", "reason"], &rows)
}

/// Runs a parsed command; returns what to print.
pub async fn run(a: &Args) -> Result<String, String> {
    let api = Api { a };
    let vh = api.vh();
    match &a.cmd {
        Cmd::List { what } => {
            let path = match what {
                Listing::Queues => format!("/api/queues/{vh}"),
                Listing::Exchanges => format!("/api/exchanges/{vh}"),
                Listing::Bindings => format!("/api/bindings/{vh}"),
                Listing::Connections => "/api/connections".into(),
                Listing::Consumers => format!("/api/consumers/{vh}"),
            };
            let v = api.call("GET", &path, None).await?;
            if a.json {
                return Ok(pretty(&v));
            }
            let items = v.as_array().cloned().unwrap_or_default();
            let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match what {
                Listing::Queues => (
                    vec![
                        "name",
                        "messages_ready",
                        "messages_unacknowledged",
                        "consumers",
                        "publish/s",
                        "dlq",
                    ],
                    items
                        .iter()
                        .map(|q| {
                            vec![
                                s(&q["name"]),
                                s(&q["messages_ready"]),
                                s(&q["messages_unacknowledged"]),
                                s(&q["consumers"]),
                                s(&q["message_stats"]["publish_details"]["rate"]),
                                if q["dead_letter_queue"] == true {
                                    "yes".into()
                                } else {
                                    String::new()
                                },
                            ]
                        })
                        .collect(),
                ),
                Listing::Exchanges => (
                    vec!["name", "type", "durable", "auto_delete", "internal"],
                    items
                        .iter()
                        .map(|x| {
                            vec![
                                s(&x["name"]),
                                s(&x["type"]),
                                s(&x["durable"]),
                                s(&x["auto_delete"]),
                                s(&x["internal"]),
                            ]
                        })
                        .collect(),
                ),
                Listing::Bindings => (
                    vec![
                        "source",
                        "destination",
                        "destination_type",
                        "routing_key",
                        "arguments",
                    ],
                    items
                        .iter()
                        .map(|b| {
                            vec![
                                s(&b["source"]),
                                s(&b["destination"]),
                                s(&b["destination_type"]),
                                s(&b["routing_key"]),
                                b["arguments"].to_string(),
                            ]
                        })
                        .collect(),
                ),
                Listing::Connections => (
                    vec![
                        "name",
                        "user",
                        "vhost",
                        "channels",
                        "client",
                        "client_name",
                        "connected_at",
                    ],
                    items
                        .iter()
                        .map(|c| {
                            let props = &c["client_properties"];
                            vec![
                                s(&c["name"]),
                                s(&c["user"]),
                                s(&c["vhost"]),
                                s(&c["channels"]),
                                format!("{} {}", s(&props["product"]), s(&props["version"]))
                                    .trim()
                                    .to_string(),
                                s(&c["user_provided_name"]),
                                c["connected_at"].as_u64().map(utc_time).unwrap_or_default(),
                            ]
                        })
                        .collect(),
                ),
                Listing::Consumers => (
                    vec![
                        "queue",
                        "consumer_tag",
                        "ack_required",
                        "prefetch_count",
                        "channel",
                    ],
                    items
                        .iter()
                        .map(|c| {
                            vec![
                                s(&c["queue"]["name"]),
                                s(&c["consumer_tag"]),
                                s(&c["ack_required"]),
                                s(&c["prefetch_count"]),
                                s(&c["channel_details"]["name"]),
                            ]
                        })
                        .collect(),
                ),
            };
            Ok(table(&header, &rows))
        }
        Cmd::Purge { queue } => {
            api.call(
                "DELETE",
                &format!("/api/queues/{vh}/{}/contents", encode_segment(queue)),
                None,
            )
            .await?;
            Ok(format!("purged queue '{queue}'\n"))
        }
        Cmd::Delete { what, name } => {
            let (kind, seg) = match what {
                Kind::Queue => ("queue", "queues"),
                Kind::Exchange => ("exchange", "exchanges"),
            };
            api.call(
                "DELETE",
                &format!("/api/{seg}/{vh}/{}", encode_segment(name)),
                None,
            )
            .await?;
            Ok(format!("deleted {kind} '{name}'\n"))
        }
        Cmd::Dlq { cmd } => dlq(&api, &vh, cmd).await,
        Cmd::Quarantine {
            cmd: QuarantineCmd::List,
        } => {
            listing(
                &api,
                "/api/quarantine",
                &["dir", "vhost", "queue", "messages", "bytes"],
            )
            .await
        }
        Cmd::Quarantine {
            cmd: QuarantineCmd::Reattach { dir },
        } => {
            let v = api
                .call(
                    "POST",
                    &format!("/api/quarantine/{}/reattach", encode_segment(dir)),
                    None,
                )
                .await?;
            Ok(format!(
                "re-attached '{dir}' as queue '{}' in vhost '{}' with {} messages\n",
                s(&v["queue"]),
                s(&v["vhost"]),
                s(&v["messages"])
            ))
        }
        Cmd::ExportDefinitions { file } => {
            let v = api.call("GET", "/api/definitions", None).await?;
            match file {
                Some(f) => {
                    std::fs::write(f, pretty(&v))
                        .map_err(|e| format!("cannot write {}: {e}", f.display()))?;
                    Ok(format!("exported definitions to {}\n", f.display()))
                }
                None => Ok(pretty(&v)),
            }
        }
        Cmd::ImportDefinitions { file } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: invalid JSON: {e}", file.display()))?;
            // 204 (Null): everything applied; 200: the report of what was skipped or ignored.
            let report = api.call("POST", "/api/definitions", Some(doc)).await?;
            Ok(import_report(&file.display().to_string(), &report, a.json))
        }
        Cmd::AddUser { .. }
        | Cmd::DeleteUser { .. }
        | Cmd::ChangePassword { .. }
        | Cmd::SetUserTags { .. }
        | Cmd::ListUsers
        | Cmd::AddVhost { .. }
        | Cmd::DeleteVhost { .. }
        | Cmd::ListVhosts
        | Cmd::SetPermissions { .. }
        | Cmd::ClearPermissions { .. }
        | Cmd::ListPermissions
        | Cmd::ListUserPermissions { .. }
        | Cmd::SetTopicPermissions { .. }
        | Cmd::ClearTopicPermissions { .. }
        | Cmd::ListTopicPermissions
        | Cmd::ListUserTopicPermissions { .. } => access(&api, &vh, &a.cmd).await,
        Cmd::ClusterStatus => {
            let v = api.call("GET", "/api/cluster", None).await?;
            if a.json {
                return Ok(pretty(&v));
            }
            let mut out = format!(
                "Cluster status of node {} (cluster {}, leader {})\n",
                s(&v["node"]),
                s(&v["cluster_name"]),
                match &v["leader"] {
                    Value::Null => "none".to_string(),
                    l => s(l),
                }
            );
            let rows: Vec<Vec<String>> = v["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    vec![
                        s(&m["name"]),
                        s(&m["address"]),
                        if m["voter"] == true { "voter" } else { "learner" }.to_string(),
                        if m["running"] == true { "running" } else { "down" }.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(&["node", "address", "role", "state"], &rows));
            Ok(out)
        }
        Cmd::JoinCluster { address } => {
            api.call("POST", "/api/cluster/join", Some(json!({"address": address})))
                .await?;
            Ok(format!("Clustering node with {address} ... joined\n"))
        }
        Cmd::Grow {
            node,
            strategy,
            vhost_pattern,
            queue_pattern,
        } => {
            let strategy = match strategy {
                GrowStrategy::All => "all",
                GrowStrategy::Even => "even",
            };
            let body = json!({
                "strategy": strategy,
                "vhost_pattern": vhost_pattern,
                "queue_pattern": queue_pattern,
            });
            let path = format!("/api/queues/quorum/replicas/on/{}/grow", encode_segment(node));
            let v = match api.call_status("POST", &path, Some(body)).await? {
                (404, _) => return Err(format!("no_such_node: {node} is not a cluster member")),
                (st, v) if st >= 400 => return Err(format!("HTTP {st}: {}", s(&v["reason"]))),
                (_, v) => v,
            };
            member_results(
                &format!(
                    "Growing {strategy} quorum queues in vhosts matching '{vhost_pattern}' and \
                     queues matching '{queue_pattern}' onto node {node} ...\n"
                ),
                &v,
                a.json,
            )
        }
        Cmd::Shrink { node } => {
            let path = format!("/api/queues/quorum/replicas/on/{}/shrink", encode_segment(node));
            let v = api.call("DELETE", &path, None).await?;
            member_results(&format!("Shrinking quorum queues on {node} ...\n"), &v, a.json)
        }
        Cmd::AddMember { queue, node } => {
            let path = format!("/api/queues/quorum/{vh}/{}/replicas/add", encode_segment(queue));
            match api
                .call_status("POST", &path, Some(json!({"node": node})))
                .await?
            {
                (404, _) => Err(format!("no_such_queue: {queue} in vhost {}", a.vhost)),
                (st, v) if st >= 400 => Err(format!("HTTP {st}: {}", s(&v["reason"]))),
                _ => Ok(format!("Adding a replica for queue {queue} on node {node} ...\n")),
            }
        }
        Cmd::DeleteMember { queue, node } => {
            let path = format!(
                "/api/queues/quorum/{vh}/{}/replicas/delete",
                encode_segment(queue)
            );
            match api
                .call_status("DELETE", &path, Some(json!({"node": node})))
                .await?
            {
                (404, _) => Err(format!("no_such_queue: {queue} in vhost {}", a.vhost)),
                (st, v) if st >= 400 => Err(format!("HTTP {st}: {}", s(&v["reason"]))),
                _ => Ok(format!(
                    "Removing a replica of queue {queue} on node {node} ...\n"
                )),
            }
        }
        Cmd::ForgetClusterNode { name } => {
            match api
                .call_status(
                    "DELETE",
                    &format!("/api/cluster/nodes/{}", encode_segment(name)),
                    None,
                )
                .await?
            {
                (404, _) => Err(format!("no_such_node: {name} is not a cluster member")),
                (st, v) if st >= 400 => Err(format!("HTTP {st}: {}", s(&v["reason"]))),
                _ => Ok(format!("Removing node {name} from the cluster ...\n")),
            }
        }
        Cmd::Status => {
            let o = api.call("GET", "/api/overview", None).await?;
            let alerts = api.call("GET", "/api/alerts", None).await?;
            if a.json {
                return Ok(pretty(&json!({"overview": o, "alerts": alerts})));
            }
            let ms = &o["message_stats"];
            let qt = &o["queue_totals"];
            let ot = &o["object_totals"];
            let mut out = format!(
                "{} {} (RabbitMQ management API {}), node {}, up {} s\n",
                s(&o["product_name"]),
                s(&o["product_version"]),
                s(&o["management_version"]),
                s(&o["node"]),
                o["uptime"].as_u64().unwrap_or(0) / 1000
            );
            for l in o["listeners"].as_array().cloned().unwrap_or_default() {
                out.push_str(&format!(
                    "listener: {} on {}:{}\n",
                    s(&l["protocol"]),
                    s(&l["ip_address"]),
                    s(&l["port"])
                ));
            }
            out.push_str(&format!(
                "objects: {} connections, {} channels, {} exchanges, {} queues, {} consumers\n",
                ot["connections"], ot["channels"], ot["exchanges"], ot["queues"], ot["consumers"]
            ));
            out.push_str(&format!(
                "messages: {} ({} ready, {} unacked)\n",
                qt["messages"], qt["messages_ready"], qt["messages_unacknowledged"]
            ));
            out.push_str(&format!(
                "rates/s: publish {} deliver {} ack {}\n",
                ms["publish_details"]["rate"], ms["deliver_get_details"]["rate"], ms["ack_details"]["rate"]
            ));
            let alerts = alerts.as_array().cloned().unwrap_or_default();
            out.push_str(&format!("alerts: {}\n", alerts.len()));
            for al in alerts {
                out.push_str(&format!(
                    "  FIRING {} on {}/{}: {} > {}\n",
                    s(&al["kind"]),
                    s(&al["vhost"]),
                    s(&al["queue"]),
                    al["value"],
                    al["threshold"]
                ));
            }
            Ok(out)
        }
    }
}

/// Lists `path` as a table of `cols` (or the API's JSON with `--json`).
/// `grow` / `shrink`'s answer as `rabbitmq-queues` prints it: a banner, then each queue's
/// vhost, name and result.
fn member_results(banner: &str, v: &Value, json: bool) -> Result<String, String> {
    if json {
        return Ok(pretty(v));
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| vec![s(&r["vhost"]), s(&r["name"]), s(&r["result"])])
        .collect();
    Ok(format!("{banner}{}", table(&["vhost", "name", "result"], &rows)))
}

async fn listing(api: &Api<'_>, path: &str, cols: &[&str]) -> Result<String, String> {
    let v = api.call("GET", path, None).await?;
    if api.a.json {
        return Ok(pretty(&v));
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            cols.iter()
                .map(|c| match &o[*c] {
                    // rabbitmqctl shows tags as `[administrator, monitoring]`.
                    Value::Array(a) => format!("[{}]", a.iter().map(s).collect::<Vec<_>>().join(", ")),
                    other => s(other),
                })
                .collect()
        })
        .collect();
    Ok(table(cols, &rows))
}

/// rabbitmqctl's user, vhost and permission commands, through the HTTP API.
async fn access(api: &Api<'_>, vh: &str, cmd: &Cmd) -> Result<String, String> {
    let seg = encode_segment;
    let vhost = &api.a.vhost;
    match cmd {
        Cmd::AddUser { name, password } => {
            if api.user(name).await.is_ok() {
                return Err(format!("user_already_exists: {name}"));
            }
            api.call(
                "PUT",
                &format!("/api/users/{}", seg(name)),
                Some(json!({"password": password, "tags": ""})),
            )
            .await?;
            Ok(format!("Adding user \"{name}\" ...\n"))
        }
        Cmd::DeleteUser { name } => match api
            .call_status("DELETE", &format!("/api/users/{}", seg(name)), None)
            .await?
        {
            (404, _) => Err(format!("no_such_user: {name}")),
            (st, v) if st >= 400 => Err(format!("HTTP {st}: {}", s(&v["reason"]))),
            _ => Ok(format!("Deleting user \"{name}\" ...\n")),
        },
        Cmd::ChangePassword { name, password } => {
            let u = api.user(name).await?;
            api.call(
                "PUT",
                &format!("/api/users/{}", seg(name)),
                Some(json!({"password": password, "tags": u["tags"]})),
            )
            .await?;
            Ok(format!("Changing password for user \"{name}\" ...\n"))
        }
        Cmd::SetUserTags { name, tags } => {
            api.user(name).await?;
            // Without a password field the API keeps the user's password.
            api.call(
                "PUT",
                &format!("/api/users/{}", seg(name)),
                Some(json!({"tags": tags})),
            )
            .await?;
            Ok(format!(
                "Setting tags for user \"{name}\" to [{}] ...\n",
                tags.join(", ")
            ))
        }
        Cmd::ListUsers => listing(api, "/api/users", &["name", "tags"]).await,
        Cmd::AddVhost { name } => {
            api.call("PUT", &format!("/api/vhosts/{}", seg(name)), None)
                .await?;
            Ok(format!("Adding vhost \"{name}\" ...\n"))
        }
        Cmd::DeleteVhost { name } => match api
            .call_status("DELETE", &format!("/api/vhosts/{}", seg(name)), None)
            .await?
        {
            (404, _) => Err(format!("no_such_vhost: {name}")),
            (st, v) if st >= 400 => Err(format!("HTTP {st}: {}", s(&v["reason"]))),
            _ => Ok(format!("Deleting vhost \"{name}\" ...\n")),
        },
        Cmd::ListVhosts => listing(api, "/api/vhosts", &["name"]).await,
        Cmd::SetPermissions {
            user,
            configure,
            write,
            read,
        } => {
            api.call(
                "PUT",
                &format!("/api/permissions/{vh}/{}", seg(user)),
                Some(json!({"configure": configure, "write": write, "read": read})),
            )
            .await?;
            Ok(format!(
                "Setting permissions for user \"{user}\" in vhost \"{vhost}\" ...\n"
            ))
        }
        Cmd::ClearPermissions { user } => {
            let (st, v) = api
                .call_status("DELETE", &format!("/api/permissions/{vh}/{}", seg(user)), None)
                .await?;
            if st == 404 {
                api.user(user).await?;
            } else if st >= 400 {
                return Err(format!("HTTP {st}: {}", s(&v["reason"])));
            }
            Ok(format!(
                "Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ...\n"
            ))
        }
        Cmd::ListPermissions => {
            listing(
                api,
                &format!("/api/vhosts/{vh}/permissions"),
                &["user", "configure", "write", "read"],
            )
            .await
        }
        Cmd::ListUserPermissions { user } => {
            listing(
                api,
                &format!("/api/users/{}/permissions", seg(user)),
                &["vhost", "configure", "write", "read"],
            )
            .await
        }
        Cmd::SetTopicPermissions {
            user,
            exchange,
            write,
            read,
        } => {
            api.call(
                "PUT",
                &format!("/api/topic-permissions/{vh}/{}", seg(user)),
                Some(json!({"exchange": exchange, "write": write, "read": read})),
            )
            .await?;
            Ok(format!(
                "Setting topic permissions on \"{exchange}\" for user \"{user}\" in vhost \"{vhost}\" ...\n"
            ))
        }
        Cmd::ClearTopicPermissions { user, exchange } => {
            let path = match exchange {
                Some(x) => format!("/api/topic-permissions/{vh}/{}/{}", seg(user), seg(x)),
                None => format!("/api/topic-permissions/{vh}/{}", seg(user)),
            };
            let (st, v) = api.call_status("DELETE", &path, None).await?;
            if st == 404 {
                api.user(user).await?;
            } else if st >= 400 {
                return Err(format!("HTTP {st}: {}", s(&v["reason"])));
            }
            Ok(format!(
                "Clearing topic permissions for user \"{user}\" in vhost \"{vhost}\" ...\n"
            ))
        }
        Cmd::ListTopicPermissions => {
            listing(
                api,
                &format!("/api/vhosts/{vh}/topic-permissions"),
                &["user", "exchange", "write", "read"],
            )
            .await
        }
        Cmd::ListUserTopicPermissions { user } => {
            listing(
                api,
                &format!("/api/users/{}/topic-permissions", seg(user)),
                &["vhost", "exchange", "write", "read"],
            )
            .await
        }
        _ => Err("not an access command".into()),
    }
}

fn header<'a>(m: &'a Value, k: &str) -> &'a Value {
    &m["properties"]["headers"][k]
}

async fn dlq(api: &Api<'_>, vh: &str, cmd: &DlqCmd) -> Result<String, String> {
    let json_out = api.a.json;
    match cmd {
        DlqCmd::Peek { queue, count } => {
            let v = api
                .call(
                    "POST",
                    &format!("/api/queues/{vh}/{}/get", encode_segment(queue)),
                    Some(json!({"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 200})),
                )
                .await?;
            if json_out {
                return Ok(pretty(&v));
            }
            let mut out = String::new();
            for (i, m) in v.as_array().cloned().unwrap_or_default().iter().enumerate() {
                out.push_str(&format!(
                    "#{} routing_key={} first death: {} in '{}' ({})\n",
                    i + 1,
                    s(&m["routing_key"]),
                    s(header(m, "x-first-death-reason")),
                    s(header(m, "x-first-death-queue")),
                    s(header(m, "x-first-death-exchange")),
                ));
                for d in header(m, "x-death").as_array().cloned().unwrap_or_default() {
                    out.push_str(&format!(
                        "   x-death: {} from '{}' via '{}' count={} time={} routing_keys={}\n",
                        s(&d["reason"]),
                        s(&d["queue"]),
                        s(&d["exchange"]),
                        d["count"],
                        d["time"],
                        d["routing-keys"]
                    ));
                }
                out.push_str(&format!(
                    "   payload ({} bytes): {}\n",
                    m["payload_bytes"],
                    s(&m["payload"])
                ));
            }
            if out.is_empty() {
                out.push_str("(queue is empty)\n");
            }
            Ok(out)
        }
        DlqCmd::Move {
            queue,
            count,
            dry_run,
            exchange,
            routing_key,
        } => {
            let mut body = json!({"dry_run": dry_run});
            if let Some(c) = count {
                body["count"] = json!(c);
            }
            if let Some(x) = exchange {
                body["target"] = json!({"exchange": x, "routing_key": routing_key});
            }
            let r = api
                .call(
                    "POST",
                    &format!("/api/queues/{vh}/{}/move", encode_segment(queue)),
                    Some(body),
                )
                .await?;
            if json_out {
                return Ok(pretty(&r));
            }
            let mut out = if *dry_run {
                format!("dry run: {} message(s) would move\n", r["would_move"])
            } else {
                format!(
                    "moved {} message(s); {} left in '{queue}'\n",
                    r["moved"], r["remaining"]
                )
            };
            let rows: Vec<Vec<String>> = r["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|g| vec![s(&g["reason"]), s(&g["queue"]), s(&g["count"])])
                .collect();
            out.push_str(&table(&["reason", "original_queue", "count"], &rows));
            for f in r["failed"].as_array().cloned().unwrap_or_default() {
                out.push_str(&format!("not moved: {}\n", s(&f["reason"])));
            }
            Ok(out)
        }
        DlqCmd::Stats { queue } => {
            let q = api
                .call(
                    "GET",
                    &format!("/api/queues/{vh}/{}", encode_segment(queue)),
                    None,
                )
                .await?;
            let r = api
                .call(
                    "POST",
                    &format!("/api/queues/{vh}/{}/move", encode_segment(queue)),
                    Some(json!({"dry_run": true})),
                )
                .await?;
            if json_out {
                return Ok(pretty(&json!({"queue": q, "groups": r["groups"]})));
            }
            let mut out = format!(
                "{}: {} message(s), dead_letter_queue={}, growth {}/min, publish {}/s\n",
                queue,
                q["messages"],
                q["dead_letter_queue"],
                q["growth_per_minute"],
                q["message_stats"]["publish_details"]["rate"]
            );
            let rows: Vec<Vec<String>> = r["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|g| vec![s(&g["reason"]), s(&g["queue"]), s(&g["count"])])
                .collect();
            out.push_str(&table(&["reason", "original_queue", "count"], &rows));
            Ok(out)
        }
    }
}

/// Parses `argv` (program name first) and runs.
pub async fn run_from<I, T>(argv: I) -> Result<String, String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let a = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
    run(&a).await
}

/// Entry point of the `warrenctl` binary.
pub fn main() -> ExitCode {
    let a = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warrenctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&a)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warrenctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{import_report, utc_time};
    use serde_json::json;

    #[test]
    fn import_report_tables() {
        assert_eq!(
            import_report("d.json", &serde_json::Value::Null, false),
            "imported definitions from d.json\n"
        );
        let j: serde_json::Value =
            serde_json::from_str(&import_report("d.json", &serde_json::Value::Null, true)).unwrap();
        assert_eq!(j, json!({"skipped": [], "ignored": []}));
        let r = json!({
            "skipped": [{"kind": "exchange", "vhost": "shop", "name": "delayed",
                         "reason": "exchange type 'x-delayed-message' is not supported"}],
            "ignored": [{"kind": "policy", "vhost": "/", "name": "ha-all",
                         "reason": "ha-mode accepted without effect in Warren"}],
        });
        assert_eq!(
            import_report("d.json", &r, false),
            "imported definitions from d.json: 1 skipped, 1 ignored\n\
             result   kind      vhost  name     reason\n\
             skipped  exchange  shop   delayed  exchange type 'x-delayed-message' is not supported\n\
             ignored  policy    /      ha-all   ha-mode accepted without effect in Warren\n"
        );
    }

    #[test]
    fn utc_time_formats_epoch_milliseconds() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_796_299_176_573), "2026-12-03 11:59:36");
        assert_eq!(utc_time(4_102_444_799_000), "2099-12-31 23:59:59");
    }
}
