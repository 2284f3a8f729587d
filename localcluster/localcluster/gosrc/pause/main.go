// Command pause is the process that holds a pod sandbox's namespaces open.
//
// It is the local cluster's own stand-in for registry.k8s.io/pause (no registry
// is reachable here): it sleeps until SIGINT or SIGTERM, and because it runs as
// PID 1 of the pod's PID namespace when namespaces are shared, it reaps orphaned
// children so they do not linger as zombies.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
