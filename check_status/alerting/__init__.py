"""CORE: the alerting rules (`rules.decide`) and the SMS text (`sms.render_sms`). No I/O."""
