"""The MLP as plain user programs, one per framework, outside the harness: what the suite's cells are set beside."""
