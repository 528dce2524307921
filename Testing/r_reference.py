"""Published R results (survival::coxph, Efron ties) on the datasets lifelines ships, for tests and docs."""

# coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)
# (Fox and Weisberg, "Cox Proportional-Hazards Regression for Survival Data in R", appendix to the R Companion)
ROSSI_FORMULA = "coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)"
ROSSI_COEF = {"fin": -0.379422, "age": -0.057438, "race": 0.313900, "wexp": -0.149796, "mar": -0.433704,
              "paro": -0.084871, "prio": 0.091497}
ROSSI_SE = {"fin": 0.191379, "age": 0.021999, "race": 0.307993, "wexp": 0.212224, "mar": 0.381868,
            "paro": 0.195757, "prio": 0.028649}
ROSSI_LOGLIK = -658.7477  # fit$loglik[2]
# coxph(Surv(time, status) ~ age + sex, data = lung)
LUNG_FORMULA = "coxph(Surv(time, status) ~ age + sex, data = lung)"
LUNG_COEF = {"age": 0.017045, "sex": -0.513219}
LUNG_SE = {"age": 0.009223, "sex": 0.167458}
