// Command bootstrapd takes a rack from bare metal to running CI capacity.
//
// Flags follow HashiCorp's CLIs: single-dash long flags (-config, -json),
// allowed before or after the positional arguments (cli.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/bootstrapd/bootstrapd/internal/api"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env is what a command may touch, so tests can run commands in-process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// commands is every command, in the order the README's CLI reference and
// `bootstrapd -h` list them.
func commands() []command {
	return []command{
		{name: "serve", summary: "run the daemon: DHCP, TFTP, node HTTP and the admin API", setup: serveCmd},
		{name: "check", summary: "validate a site config without serving", setup: checkCmd},
		{name: "doctor", summary: "preflight: interface, ports, netboot files, profiles, router and cluster", setup: doctorCmd},
		{name: "enroll", args: []string{"<mac>"}, summary: "enroll a node by MAC so it installs on its next PXE boot", setup: enrollCmd},
		{name: "nodes", summary: "list nodes", setup: nodesCmd},
		{name: "node", summary: "show one node; change how it boots its disk", subs: []command{
			{name: "show", args: []string{"<mac|hostname>"}, summary: "show one node: state, address, lease, profile, history", setup: nodeShowCmd},
			{name: "boot", args: []string{"<mac|hostname>", "exit|sanboot|none"}, summary: "change how an installed node boots its disk (from its next PXE boot)", setup: nodeBootCmd},
			{name: "bmc", args: []string{"<mac|hostname>", "<url>|none"}, summary: "give a node a BMC (ipmi:// or redfish://), change it, or remove it (none)", setup: nodeBMCCmd},
		}},
		{name: "reinstall", args: []string{"<mac|hostname>"}, summary: "send a node back to enrolled: it installs again on its next PXE boot", setup: reinstallCmd},
		{name: "retire", args: []string{"<mac|hostname>"}, summary: "take a node out of service: drain, revoke, remove its records; -wait until it is retired", setup: retireCmd},
		{name: "power", summary: "power a node through its BMC (or wake it with Wake-on-LAN); each action is in its history", subs: []command{
			{name: "status", args: []string{"<mac|hostname>"}, summary: "ask a node's BMC whether it is on", setup: powerCmd(api.PowerStatus)},
			{name: "on", args: []string{"<mac|hostname>"}, summary: "power a node on through its BMC; -wol sends a Wake-on-LAN packet instead", setup: powerCmd(api.PowerOn)},
			{name: "off", args: []string{"<mac|hostname>"}, summary: "power a node off through its BMC (hard off)", setup: powerCmd(api.PowerOff)},
			{name: "cycle", args: []string{"<mac|hostname>"}, summary: "power-cycle a node through its BMC (on when it was off)", setup: powerCmd(api.PowerCycle)},
		}},
		{name: "events", summary: "show the event log; -f follows it", setup: eventsCmd},
		{name: "ui", summary: "open the live status page: prints a one-time login link (serves it on 127.0.0.1 when bootstrapd is on its socket)", setup: uiCmd},
		{name: "leases", summary: "list DHCP leases", setup: leasesCmd},
		{name: "profiles", summary: "list install profiles", setup: profilesCmd},
		{name: "store", summary: "move the inventory between a store file and etcd", subs: []command{
			{name: "copy", summary: "copy the inventory from the store file into the site's etcd (-to etcd) or back (-to file); refuses a non-empty target without -force", setup: storeCopyCmd},
		}},
		{name: "netboot", summary: "manage the netboot directory", subs: []command{
			{name: "import", args: []string{"<void-ARCH-NETBOOT-DATE.tar.gz>"}, summary: "add a Void NETBOOT kernel and initrd", setup: netbootImportCmd},
		}},
		{name: "router", summary: "configure the MikroTik over the RouterOS API", subs: []command{
			{name: "plan", summary: "show what apply would change on the router", setup: routerPlanApplyCmd("plan")},
			{name: "apply", summary: "make the router match the site and its nodes", setup: routerPlanApplyCmd("apply")},
			{name: "bootstrap-script", summary: "write the RouterOS script that lets bootstrapd reach a fresh router (no fingerprint needed yet)", setup: routerBootstrapScriptCmd},
			{name: "fingerprint", summary: "print the router's api-ssl certificate fingerprint (trust on first use); -write pins it in the site", setup: routerFingerprintCmd},
		}},
		{name: "cluster", summary: "set up Vault and Nomad for bootstrapd", subs: []command{
			{name: "init", summary: "set up Vault and the Concourse worker job in Nomad", setup: clusterInitCmd},
			{name: "server-token", args: []string{"FILE"}, summary: "mint the Nomad servers' Vault token into FILE (0600, never printed)", setup: clusterServerTokenCmd},
		}},
		{name: "version", summary: "print the version", setup: func(_ *flag.FlagSet, e *env) action {
			return func(context.Context, []string) error {
				fmt.Fprintln(e.stdout, "bootstrapd", version)
				return nil
			}
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, stop catching them: a second Ctrl-C
		// kills a stop that is taking too long.
		<-ctx.Done()
		stop()
	}()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(ctx, e, os.Args[1:]))
}

// run runs the command line args and returns the exit code. `bootstrapd
// help router plan` is `bootstrapd router plan -h`.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 && args[0] == "help" {
		args = append(args[1:len(args):len(args)], "-h")
	}
	root := command{name: "bootstrapd", summary: "bootstrapd takes a rack from bare metal to running CI capacity.", subs: commands()}
	return execute(ctx, e, []string{"bootstrapd"}, root, args)
}
