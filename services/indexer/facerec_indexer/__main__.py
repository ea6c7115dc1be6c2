from facerec_indexer.worker import main

main()
