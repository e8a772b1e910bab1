// Package cli wires haroll's subcommands (cobra + viper): configuration,
// logging and signals live here, behaviour lives in agent, runtime and docker.
package cli
