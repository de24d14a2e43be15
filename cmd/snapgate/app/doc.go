// Package app wires snapgate's subcommands: flags into options structs, then the
// packages that do the work. It holds no logic of its own.
package app
