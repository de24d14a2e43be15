// Package policy is snapgate's annotation API: the snapgate.io/* keys a user sets
// on a StatefulSet, the ones snapgate records, and Parse, which turns them into a
// Policy or into field errors that name the annotation, the value and what is
// allowed.
//
// It reads annotations only; it never talks to the API server.
package policy
