// Package framework gives e2e tests what a user has: the cluster's kubeconfig,
// the real kubectl, and a namespace of their own that is removed afterwards.
package framework
