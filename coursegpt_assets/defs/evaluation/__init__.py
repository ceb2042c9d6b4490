"""Stage `evaluation`: benchmark per agent, evaluation_report per pair, leaderboard per agent."""
