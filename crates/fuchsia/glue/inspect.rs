// Copyright 2026 The Fuchsia Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE file.

//! Inspect glue: the service computes its tree as data
//! (zygote_fuchsia::inspect, tested on Linux) when Inspect is read; this file
//! copies that data into fuchsia_inspect nodes and publishes them.

use std::sync::Arc;

use fuchsia_inspect::{ExponentialHistogramParams, HistogramProperty as _, Inspector, Node};
use futures::FutureExt as _;
use zygote_fuchsia::inspect::{self as model, LAZY_IMAGES, Value};

use crate::ZygoteService;

/// Publish `cache`, `spawns` and `launchers` (computed on each read, at the
/// root) and the lazy `images` node. Keep the controller alive.
pub fn publish(service: Arc<ZygoteService>) -> Option<inspect_runtime::PublishedInspectController> {
    let inspector = fuchsia_inspect::component::inspector();
    let s = service.clone();
    inspector.root().record_lazy_values("stats", move || {
        let s = s.clone();
        async move { Ok::<_, anyhow::Error>(snapshot(&s.inspect())) }.boxed()
    });
    inspector.root().record_lazy_child(LAZY_IMAGES, move || {
        let s = service.clone();
        async move { Ok::<_, anyhow::Error>(snapshot(&s.images_node())) }.boxed()
    });
    fuchsia_inspect::component::health().set_ok();
    inspect_runtime::publish(inspector, inspect_runtime::PublishOptions::default())
}

fn snapshot(tree: &model::Node) -> Inspector {
    let inspector = Inspector::default();
    write(inspector.root(), tree);
    inspector
}

fn write(node: &Node, data: &model::Node) {
    for (name, value) in &data.properties {
        match value {
            Value::Uint(v) => node.record_uint(name.as_str(), *v),
            Value::String(s) => node.record_string(name.as_str(), s),
            Value::Bool(b) => node.record_bool(name.as_str(), *b),
            Value::Histogram { params, inserts } => {
                let h = node.create_uint_exponential_histogram(
                    name.as_str(),
                    ExponentialHistogramParams {
                        floor: params.floor,
                        initial_step: params.initial_step,
                        step_multiplier: params.step_multiplier,
                        buckets: params.buckets,
                    },
                );
                for &(value, count) in inserts {
                    h.insert_multiple(value, count as usize);
                }
                node.record(h);
            }
        }
    }
    for child in &data.children {
        node.record_child(child.name.as_str(), |n| write(n, child));
    }
}
