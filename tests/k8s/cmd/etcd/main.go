// Command etcd is etcd's server at the version k8s.io/kubernetes pins (go.etcd.io/etcd/server/v3),
// built here because Debian bookworm's etcd-server 3.4.23 lacks what kube-apiserver 1.35 needs for
// watch progress requests (etcd 3.4.31+/3.5.13+; see docs/kubernetes.md).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
