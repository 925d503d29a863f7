"""One module per subcommand: `register(subparsers, common)` adds its parser, `run(args)` does the work."""
import argparse


def add_parser(sub, common, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand parser with the shared options, its explanation and examples."""
    return sub.add_parser(name, parents=[common], help=summary, description=description,
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
