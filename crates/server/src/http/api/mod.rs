//! `/api/*` handlers: RabbitMQ's management API paths and JSON field names for the overview,
//! vhosts, exchanges, queues, bindings, connections, channels, consumers, users, permissions,
//! health checks, message get/publish, purge, and Warren's `/api/alerts` and `…/move`.
//!
//! This file holds the routes table ([`routes`]) and the helpers every section shares; each
//! section of the API is a file of its own ([`overview`], [`vhosts`], [`exchanges`],
//! [`queues`], [`replicas`] (quorum queue members), [`bindings`], [`cluster`], [`remote`] (cluster-wide listings), [`connections`], [`users`], [`health`]). Every change to a vhost's
//! topology goes through the vhost service ([`crate::vhost::VHost`]).

use axum::Router;
use axum::routing::{get, post};

use super::shared::Shared;
use crate::http::definitions;

pub mod bindings;
mod cluster;
mod common;
mod connections;
pub mod exchanges;
mod health;
pub(crate) mod limits;
mod overview;
pub(crate) mod peer_listing;
pub mod queues;
pub(crate) mod remote;
mod replicas;
pub mod users;
mod vhosts;

pub use bindings::*;
use cluster::*;
use connections::*;
pub use exchanges::*;
use health::*;
use limits::*;
use overview::*;
pub use queues::*;
use replicas::*;
pub use users::*;
use vhosts::*;

/// The routes under `/api`.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/nodes", get(nodes))
        .route("/api/cluster", get(cluster_status))
        .route("/api/cluster/join", post(cluster_join))
        .route("/api/cluster/nodes/{name}", axum::routing::delete(cluster_forget))
        .route("/api/nodes/{name}", get(node_get))
        .route("/api/nodes/{name}/memory", get(node_memory))
        .route("/api/auth/attempts/{name}", get(auth_attempts))
        .route("/api/auth/attempts/{name}/source", get(auth_attempts))
        .route("/api/parameters", get(parameters_all))
        .route("/api/parameters/{component}", get(parameters_component))
        .route("/api/parameters/{component}/{vhost}", get(parameters_vhost))
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(parameter_get).put(parameter_put).delete(parameter_delete),
        )
        .route("/api/global-parameters", get(global_parameters))
        .route("/api/global-parameters/{name}", get(global_parameter_get))
        .route("/api/operator-policies", get(empty_list))
        .route("/api/operator-policies/{vhost}", get(empty_list))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(not_found).put(operator_policy_put).delete(not_found),
        )
        .route("/api/deprecated-features", get(empty_list))
        .route("/api/deprecated-features/used", get(empty_list))
        .route("/api/vhost-limits", get(vhost_limits))
        .route("/api/vhost-limits/{vhost}", get(vhost_limits_one))
        .route("/api/user-limits", get(user_limits))
        .route("/api/user-limits/{user}", get(user_limits_one))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            axum::routing::put(vhost_limit_put).delete(vhost_limit_delete),
        )
        .route(
            "/api/user-limits/{user}/{name}",
            axum::routing::put(user_limit_put).delete(user_limit_delete),
        )
        .route("/api/whoami", get(whoami))
        .route("/api/auth", get(auth))
        .route("/api/cluster-name", get(cluster_name).put(cluster_name_put))
        .route("/api/extensions", get(extensions))
        .route("/api/feature-flags", get(feature_flags))
        .route("/api/vhosts", get(vhosts))
        .route(
            "/api/vhosts/{name}",
            get(vhost_get).put(vhost_put).delete(vhost_delete),
        )
        .route("/api/exchanges", get(exchanges_all))
        .route("/api/exchanges/{vhost}", get(exchanges_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchange_get).put(exchange_put).delete(exchange_delete),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(exchange_publish))
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(exchange_bindings_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(exchange_bindings_destination),
        )
        .route("/api/queues", get(queues_all))
        .route("/api/queues/detailed", get(queues_all))
        .route("/api/queues/{vhost}", get(queues_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queue_get).put(queue_put).delete(queue_delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(queue_purge),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queue_get_messages))
        .route("/api/queues/{vhost}/{name}/move", post(queue_move))
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route(
            "/api/queues/quorum/{vhost}/{name}/replicas/add",
            post(replica_add),
        )
        .route(
            "/api/queues/quorum/{vhost}/{name}/replicas/delete",
            axum::routing::delete(replica_delete),
        )
        .route("/api/queues/quorum/replicas/on/{node}/grow", post(replicas_grow))
        .route(
            "/api/queues/quorum/replicas/on/{node}/shrink",
            axum::routing::delete(replicas_shrink),
        )
        .route("/api/bindings", get(bindings_all))
        .route("/api/bindings/{vhost}", get(bindings_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}",
            get(bindings_between_q).post(binding_create_q),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}",
            get(binding_get_q).delete(binding_delete_q),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}",
            get(bindings_between_e).post(binding_create_e),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}",
            get(binding_get_e).delete(binding_delete_e),
        )
        .route("/api/connections", get(connections))
        .route(
            "/api/connections/{name}",
            get(connection_get).delete(connection_delete),
        )
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route(
            "/api/connections/username/{user}",
            get(user_connections).delete(user_connections_delete),
        )
        .route("/api/vhosts/{name}/connections", get(vhost_connections))
        .route("/api/vhosts/{name}/channels", get(vhost_channels))
        .route("/api/channels", get(channels))
        .route("/api/channels/{name}", get(channel_get))
        .route("/api/consumers", get(consumers_all))
        .route("/api/consumers/{vhost}", get(consumers_vhost))
        .route("/api/users", get(users))
        .route("/api/users/without-permissions", get(users_without_permissions))
        .route(
            "/api/users/{name}",
            get(user_get)
                .put(crate::http::users::user_put)
                .delete(crate::http::users::user_delete),
        )
        .route(
            "/api/users/{name}/permissions",
            get(crate::http::users::user_permissions),
        )
        .route(
            "/api/vhosts/{name}/permissions",
            get(crate::http::users::vhost_permissions),
        )
        .route("/api/permissions", get(permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(crate::http::users::permission_get)
                .put(crate::http::users::permission_put)
                .delete(crate::http::users::permission_delete),
        )
        .route(
            "/api/users/{name}/topic-permissions",
            get(crate::http::users::user_topic_permissions),
        )
        .route(
            "/api/vhosts/{name}/topic-permissions",
            get(crate::http::users::vhost_topic_permissions),
        )
        .route(
            "/api/topic-permissions",
            get(crate::http::users::topic_permissions_all),
        )
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(crate::http::users::topic_permission_get)
                .put(crate::http::users::topic_permission_put)
                .delete(crate::http::users::topic_permission_delete),
        )
        .route(
            "/api/topic-permissions/{vhost}/{user}/{exchange}",
            axum::routing::delete(crate::http::users::topic_permission_delete_one),
        )
        .route("/api/policies", get(crate::http::policies::list_all))
        .route("/api/policies/{vhost}", get(crate::http::policies::list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(crate::http::policies::get)
                .put(crate::http::policies::put)
                .delete(crate::http::policies::delete),
        )
        .route(
            "/api/definitions",
            get(definitions::export).post(definitions::import),
        )
        .route(
            "/api/definitions/{vhost}",
            get(definitions::export_vhost).post(definitions::import_vhost),
        )
        .route("/api/alerts", get(alerts))
        .route("/api/healthchecks/node", get(health_ok))
        .route("/api/healthchecks/alarms", get(health_alarms))
        .route("/api/healthchecks/port-listener/{port}", get(health_port))
        .route("/api/health/checks/alarms", get(health_alarms))
        .route("/api/health/checks/local-alarms", get(health_local_alarms))
        .route("/api/health/checks/virtual-hosts", get(health_ok))
        .route("/api/health/checks/node-is-quorum-critical", get(health_ok))
        .route("/api/health/checks/node-is-mirror-sync-critical", get(health_ok))
        .route("/api/health/checks/ready-to-serve-clients", get(health_ok))
        .route("/api/health/checks/port-listener/{port}", get(health_port))
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health_protocol),
        )
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(health_certificate_expiration),
        )
        .route(
            "/api/health/checks/below-node-connection-limit",
            get(health_below_connection_limit),
        )
        .route("/api/health/checks/is-in-service", get(health_ok))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}
