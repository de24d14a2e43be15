// Package presets holds snapgate's built-in hooks (snapgate.io/hook-preset):
// the scripts that quiesce PostgreSQL, MySQL and MariaDB, MongoDB, or a
// filesystem inside the containers users run, each checked against the
// official image's Dockerfile and entrypoint (and Bitnami's), with the bounds
// that end what they hold if snapgate never gets to the post-hook. The policy
// checks the annotation against this registry; the hooks runner runs it.
package presets
