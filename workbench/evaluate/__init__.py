"""Did an edit work without collateral damage? CounterFact metrics (Meng et al. 2022)."""
