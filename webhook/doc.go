// Package webhook holds snapgate's admission handlers. Guard, the mutating
// handler, decodes the old and new StatefulSet (or Scale), classifies the change,
// asks the snapshotter for a set within a time budget, and answers allow or deny
// with a JSON patch of the record and an admission warning. Validator checks
// snapgate's own annotations. Configurations builds the webhook configurations
// that route requests here.
//
// Handlers make no Kubernetes writes of their own: every action goes through the
// snapshotter package.
package webhook
