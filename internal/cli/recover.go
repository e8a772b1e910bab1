package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRecover() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Finish or roll back a replacement that a crash cut off (the agent does this when it starts)",
		Long: `recover reads the journal in state_dir. A new container that had passed
the health gate is kept and given its traffic; anything earlier is rolled back
to the old container. Either way the server gets its original weight and state
back and no container is left over. "haroll redeploy" and "haroll agent" do
this first on their own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadAgentConfig(cmd)
			if err != nil {
				return err
			}
			a, closeAgent, err := openAgent(cmd.Context(), cfg, nil)
			if err != nil {
				return err
			}
			defer closeAgent()
			did, err := a.Recover(cmd.Context())
			if err != nil {
				return err
			}
			if did == "" {
				did = "nothing to recover: no replacement was cut off"
			}
			fmt.Fprintln(cmd.OutOrStdout(), did)
			return nil
		},
	}
	agentFlags(cmd)
	return cmd
}
