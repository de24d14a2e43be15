// Package hooks quiesces the application in a StatefulSet's pods before its
// snapshots are cut, and thaws it after: it is the snapshotter's Quiescer.
//
// Hooks come, first match wins, from the StatefulSet's snapgate.io/pre-hook and
// post-hook annotations, from a preset (snapgate.io/hook-preset, package presets), or from
// Velero's pod annotations (pre.hook.backup.velero.io/...). Commands are argv
// lists, run through the API server's exec (client-go remotecommand), never
// through a shell of snapgate's. A command taken from annotations runs only if
// the user who asked for the change may create pods/exec in that namespace
// themselves, so snapgate is never a deputy that execs for someone who may not.
// Only pods owned by the StatefulSet are exec'd into, and every pod whose
// pre-hook was attempted gets its post-hook, whatever happened: while hooks are
// in flight a replica keeps a record of the post-hooks it owes (InFlight), and
// if it dies the leader's Thawer runs them. Presets that hold something (a
// lock, a freeze) also leave a bound in the pod that ends it without snapgate.
package hooks
