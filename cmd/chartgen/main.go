// Command chartgen writes the chart's webhook configurations from the code's
// (webhook.ChartTemplate), or with -check fails if the chart's differ: `make
// generate` and `make lint` run it.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/snapgate/snapgate/webhook"
)

func main() {
	check := flag.Bool("check", false, "fail if "+webhook.ChartTemplatePath+" is not what the code generates, instead of writing it")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	want, err := webhook.ChartTemplate()
	if err != nil {
		return err
	}
	if !check {
		return os.WriteFile(webhook.ChartTemplatePath, want, 0o644)
	}
	got, err := os.ReadFile(webhook.ChartTemplatePath)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s is not what webhook.Configurations generates; run `make generate` and commit it", webhook.ChartTemplatePath)
	}
	return nil
}
