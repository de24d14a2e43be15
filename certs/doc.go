// Package certs handles snapgate's serving certificate when cert-manager does
// not: it generates a self-signed CA and a serving certificate into a directory
// (reused while valid, renewed before expiry, written atomically so that
// controller-runtime's certwatcher reloads them without a restart), and
// registers the webhook configurations with that CA as their caBundle.
package certs
