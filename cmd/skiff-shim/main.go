// Command skiff-shim is the process runtime's shim as a binary of its own.
// It links only package shim, so it starts in a millisecond or two and its
// resident memory stays small, unlike re-executing the whole skiff binary
// (whose package initialisers alone cost tens of megabytes). Install it next
// to skiff; the runtime prefers it when it finds it there.
package main

import (
	"os"

	"github.com/skiff-org/skiff/pkg/runtime/process/shim"
)

func main() {
	os.Exit(shim.Main(os.Args[1:]))
}
