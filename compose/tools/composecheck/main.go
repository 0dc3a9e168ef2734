// Command composecheck loads Compose files with compose-go v2, the loader
// Docker Compose v2 (`docker compose`) uses, and fails on anything it
// rejects: schema violations, unknown keys, bad interpolation, missing
// build contexts or env files. compose/compose_test.go runs it.
//
//	composecheck [-p project] file.yml...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	project := flag.String("p", "composecheck", "project name (the files carry no top-level name, for compose v1)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-p project] file.yml...")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions(flag.Args(),
		cli.WithName(*project),
		cli.WithWorkingDirectory(filepath.Dir(flag.Arg(0))),
		cli.WithOsEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
	fmt.Printf("compose-go v2: project %s: %d services, %d volumes\n", p.Name, len(p.Services), len(p.Volumes))
}
