# shellcheck shell=bash
# The integration tests in a pure cgroup v2 guest (scripts/in-v2vm), shared by
# scripts/test (the CI pass: the tests that touch cgroups) and
# scripts/test-v2-full (every test). Source it after common.sh.

# The tests of the CI pass: every test that creates, limits, freezes, reads or
# removes cgroups through one of peapod's front ends, at least once each.
# libtest's --exact names. The VM runs them ~10-25x slower than the host.
# shellcheck disable=SC2034 # used by the scripts that source this file
V2_CI_TESTS=(
	# the runc verbs: create/start/kill/delete and the cgroup left behind
	runtime::lifecycle_create_start_state_kill_delete
	# pause/resume (cgroup.freeze), update (memory.max, pids.max), events --stats
	runtime::list_pause_resume_update_events
	# the default cgroup (/peapod/<id>) made and removed without cgroupsPath
	runtime::bundle_without_cgroups_path_and_tmpcopyup_mounts
	# exec joins the container's cgroup
	runtime::exec_inherits_the_containers_confinement
	# pods: containers under the pod's cgroup, removed at stop
	pod::pod_shares_net_ipc_uts_and_runs_init_containers_in_order
	# device rules (on v2 an eBPF program on the container's cgroup)
	pod_features::security_context_user_capabilities_read_only_root_and_no_new_privs
	conformance_devices::device_rules_deny_mknod_devices_outside_the_allowed_list
	# pod limits: memory.max, cpu.max
	pod_features::resource_limits_reach_the_container_cgroup
	# OOM kill seen through memory.events
	pod_features::a_container_killed_for_memory_is_oom_killed_and_a_clean_exit_is_not
	# QoS: the kubelet's kubepods tree, cpu.weight/cpu.max/memory.max of pod
	# and containers, oom_score_adj, qosClass, parents gone with the last pod;
	# hugetlb.SIZE.max of pod and containers
	qos::qos_classes_shape_the_cgroup_tree_shares_limits_and_oom_scores
	qos::hugepages_limit_the_pod_and_container_cgroups_where_hugetlb_is
	qos::pods_starting_and_stopping_together_share_the_qos_parents_safely
	# memory pressure under kubepods: the OOM killer takes BestEffort, not Guaranteed
	qos_oom::under_memory_pressure_the_best_effort_container_is_oom_killed_first
	# the shim under containerd: metrics (Stats), pause/resume
	containerd_shim::containerd_shim_ctr
	# the shim under containerd's CRI: a memory limit, ContainerStats, TaskOOM
	containerd_shim::containerd_shim_cri_pod
	# peapod under containerd's runc shim: ctr's cgroupsPath, freeze, cleanup
	containerd::containerd_runc_shim_detached_lifecycle
)

# Tests that fail only in the v2 guest, each with its cause, until peapod's
# cgroup v2 code is fixed: the CI pass skips them (scripts/test-v2-full runs
# them all the same). Format: "test name|why".
# shellcheck disable=SC2034 # used by the scripts that source this file
V2_KNOWN_FAILURES=(
)

# v2_integration_binary: builds the integration tests (not run) and prints the
# test binary's path.
v2_integration_binary() {
	local bin
	bin=$(cargo test --no-run --test integration --message-format=json --quiet |
		jq -r 'select(.reason == "compiler-artifact" and .target.name == "integration"
			and .profile.test == true) | .executable // empty' | tail -n1)
	[[ -n $bin && -x $bin ]] || die "cargo test --no-run --test integration gave no test binary"
	printf '%s\n' "$bin"
}

# v2_known_failure_names: the names in V2_KNOWN_FAILURES, one a line.
v2_known_failure_names() {
	local entry
	for entry in "${V2_KNOWN_FAILURES[@]}"; do
		printf '%s\n' "${entry%%|*}"
	done
}

# The tests of the systemd cgroup driver: they need systemd as PID 1, so they
# run in a guest of their own (in-v2vm --systemd, with a system bus), after
# the pass above (scripts/test and scripts/test-v2-full).
# shellcheck disable=SC2034 # used by the scripts that source this file
# (ignored on other hosts: they need systemd as PID 1)
V2_SYSTEMD_TESTS=(
	systemd_cgroup::
	--include-ignored
)

# v2_run_tests [--systemd] TIMEOUT TEST-ARGS...: runs the integration test
# binary in the v2 guest (booted with systemd as PID 1 with --systemd) with
# TEST-ARGS (libtest's filters and options); returns its exit code.
v2_run_tests() {
	local vm_opts=() bin started rc=0
	if [[ ${1:-} == --systemd ]]; then
		vm_opts=(--systemd)
		shift
	fi
	local timeout=$1
	shift
	"$PEAPOD_REPO/scripts/v2vm-setup"
	bin=$(v2_integration_binary)
	started=$(now_ms)
	log "cgroup v2 guest${vm_opts[*]:+ (systemd)}: ${bin#"$PEAPOD_REPO"/} $*"
	# Two threads: the guest has two CPUs (as CI's machine). The tests' deadlines
	# are made for a host: emulation is 10-25x slower.
	PEAPOD_TEST_DEADLINE_SCALE=${PEAPOD_TEST_DEADLINE_SCALE:-10} \
		"$PEAPOD_REPO/scripts/in-v2vm" "${vm_opts[@]}" --timeout "$timeout" -- "$bin" --test-threads=2 "$@" || rc=$?
	log "cgroup v2 pass: exit code $rc after $((($(now_ms) - started) / 1000)) s"
	return "$rc"
}
