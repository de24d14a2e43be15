#!/bin/bash
# Runs the server in the foreground as PID 1 (Bitnami's run.sh does the same).
exec postgres -D "$POSTGRESQL_DATA_DIR"
