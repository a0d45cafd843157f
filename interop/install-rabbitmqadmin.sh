#!/usr/bin/env bash
# Installs rabbitmqadmin v2 (RabbitMQ's CLI, a Rust crate) from crates.io into ROOT/bin, unless
# a v2 is there already:
#
#   interop/install-rabbitmqadmin.sh ROOT
#
# A debug build: about 200 s of CPU (measured: 172 s user + 26 s system), against ~14 minutes
# for `cargo install`'s release build; its build directory is a temporary one, removed after.
# It holds ROOT/.install.lock meanwhile, so a second caller waits for the first and then finds
# the binary: .ci/run starts it early at the lowest CPU priority (in the idle time the
# workspace's build and tests leave), and interop/run.sh, which calls it too, waits for it.
set -uo pipefail
VERSION=2.35.0
root=${1:?usage: install-rabbitmqadmin.sh ROOT}
mkdir -p "$root"
exec 9>"$root/.install.lock"
flock 9
if "$root/bin/rabbitmqadmin" --version 2>/dev/null | head -n1 | grep -q '^rabbitmqadmin 2\.'; then
  exit 0
fi
unset CARGO_TARGET_DIR
exec cargo install --quiet --locked --debug --version "$VERSION" --root "$root" rabbitmqadmin
