from facerec_embedder.worker import main

main()
