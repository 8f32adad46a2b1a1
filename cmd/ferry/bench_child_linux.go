package main

import "syscall"

// childSysProcAttr makes the kernel kill a child server when the benchmark
// process dies, so an interrupted run leaves no server behind. Linux sends
// the signal when the OS thread that started the child exits. The Go
// runtime keeps its threads until the process ends, unless a goroutine
// exits while locked to one, which this command never does.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
