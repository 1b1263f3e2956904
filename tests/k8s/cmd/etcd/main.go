// Command etcd is etcd's server at the version k8s.io/kubernetes pins (go.etcd.io/etcd/server/v3),
// built in this module because Debian bookworm's etcd-server (3.4) is older than the release supports.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
