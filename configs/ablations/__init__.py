"""The papers' ablations as sweeps: each file has get_config(arg) and get_sweep(arg)."""
