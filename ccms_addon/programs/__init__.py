"""After-sale programs: free-return and buyback guarantees, satisfaction check-ins and follow-up
sequences.

- ``schemas``    the terms a merchant configures, validated (marshmallow) and versioned;
- ``service``    creating programs and new versions of their terms (CLI and API share it);
- ``schedule``   when a step is due: the shopper's time zone, the local send time, quiet hours;
- ``enrollment`` fulfilled orders → enrollments → follow-ups, stored in SQL (the record of truth);
- ``scheduler``  hands follow-ups near their due time to RQ, and rebuilds what Redis lost;
- ``followups``  the RQ job that sends one follow-up through the outbox, exactly once;
- ``templates``  the built-in message texts (ko, en, ja) and the merchant's own, rendered safely;
- ``checkins``   a shopper's answer to a check-in; a low one opens a complaint;
- ``claims``     guarantee claims: eligibility, the merchant's decision, the platform settlement;
- ``pages``      the hosted pages a follow-up's signed link opens.
"""
