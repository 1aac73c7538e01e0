// Package kubernetes holds no code: it is the home of the kustomize base
// and example overlay that run the reconciler on Kubernetes, and of the
// test that builds them with the kustomize API and checks every resource
// against the Kubernetes API types.
//
// The test lives apart from package deploy because the kustomize and
// Kubernetes API modules cost about a minute of cold build time on a
// two-core machine; nothing else in the project imports them.
package kubernetes
