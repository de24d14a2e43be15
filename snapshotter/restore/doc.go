// Package restore brings a snapshot set up as a StatefulSet of its own, beside
// the live one, in the same namespace or another: what `snapgate restore
// --into` does, and what a verify restores and then deletes. The plan of the
// copy is rollback.CopyOf; this package reads what the plan needs, refuses to
// overwrite anything, and creates, waits for and deletes the copy's objects.
package restore
