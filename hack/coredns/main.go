// Command coredns is CoreDNS with only the plugins the testbed's node needs: it answers the
// cluster's names (kubernetes plugin) and nothing else — there is no forward plugin, so no query
// ever leaves the machine. Built and cached by promptalias.testbed.gobuild (docs/node.md).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives keeps the upstream execution order (core/dnsserver/zdirectives.go) of the plugins above.
var directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"errors",
	"loadbalance",
	"cache",
	"kubernetes",
	"loop",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
