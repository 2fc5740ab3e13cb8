"""NOTE TO HELPER (from the lead): this file held your BackendChoice, BackendOpt, JsonOpt, ModelOpt,
Smoothing, ThreadsOpt definitions; the lead accidentally overwrote it at ~08:05 UTC. Please re-create
its contents (replace this whole file). The lead's generated training options are in
ser_edge/cli/config_options.py (a different module; leave it alone)."""
