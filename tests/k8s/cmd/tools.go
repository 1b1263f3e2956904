//go:build tools

// Package tools pins the upstream commands this module builds, so `go mod tidy` keeps their
// dependencies. Build them with `go build k8s.io/kubernetes/cmd/<name>` (see ../build.sh).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
