"""Code shared by several backends: local subprocess commands, bench options and commands."""
