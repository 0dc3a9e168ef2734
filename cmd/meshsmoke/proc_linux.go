package main

import "syscall"

// childAttr makes the kernel SIGKILL a child if meshsmoke itself dies
// without cleaning up (kill -9, OOM), so no replica outlives a run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
